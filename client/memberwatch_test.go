package client

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// silentNode sends its member list (1 + lists times) and heartbeats, then
// falls silent without closing the stream (a partition, a hung process).
type silentNode struct {
	kvdv1connect.UnimplementedClusterHandler
	id         uint64
	lists      int
	heartbeats int
}

func (n *silentNode) WatchMembers(ctx context.Context, _ *connect.Request[kvdv1.WatchMembersRequest], s *connect.ServerStream[kvdv1.WatchMembersResponse]) error {
	list := &kvdv1.MembersResponse{Members: []*kvdv1.Member{{Id: n.id, Role: kvdv1.Role_ROLE_VOTER, State: "ready"}}}
	for range 1 + n.lists {
		if err := s.Send(&kvdv1.WatchMembersResponse{Members: list, NodeId: n.id}); err != nil {
			return err
		}
	}
	for range n.heartbeats {
		if err := s.Send(&kvdv1.WatchMembersResponse{NodeId: n.id}); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

func startSilentNode(t *testing.T, n *silentNode) string {
	t.Helper()
	path, h := kvdv1connect.NewClusterHandler(n)
	return serveH2C(t, path, h)
}

// A node that sends nothing for streamSilence is left for the next
// endpoint, whose member list comes with EventsLost; heartbeats are not
// passed on.
func TestWatchMembersLeavesASilentNode(t *testing.T) {
	defer func(d time.Duration) { streamSilence = d }(streamSilence)
	streamSilence = 300 * time.Millisecond
	first := startSilentNode(t, &silentNode{id: 1, heartbeats: 3})
	second := startSilentNode(t, &silentNode{id: 2})
	c, err := New(Config{Endpoints: []string{first, second}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := c.WatchMembers(ctx)
	next := func() MemberUpdate {
		t.Helper()
		select {
		case u := <-ch:
			if u.Err != nil {
				t.Fatalf("watch ended: %v", u.Err)
			}
			return u
		case <-time.After(5 * time.Second):
			t.Fatal("no update within 5s")
		}
		return MemberUpdate{}
	}
	if u := next(); u.EventsLost || u.Members == nil || u.Members.Endpoint != first || len(u.Events) != 0 {
		t.Fatalf("first update %+v, want the first node's list", u)
	}
	if u := next(); !u.EventsLost || u.Members == nil || u.Members.Endpoint != second || u.Members.Members[0].ID != 2 {
		t.Fatalf("second update %+v, want the second node's list with EventsLost", u)
	}
	cancel()
	if u := <-ch; u.Err == nil {
		t.Fatalf("after cancel: %+v, want a final update with Err", u)
	}
	if _, ok := <-ch; ok {
		t.Fatal("channel not closed after the final update")
	}
}

func TestMemberEventKindNames(t *testing.T) {
	for k, want := range map[MemberEventKind]string{MemberCaughtUp: "caught-up", LeaderChanged: "leader-changed", 0: "unknown", 42: "unknown"} {
		if got := k.String(); got != want {
			t.Errorf("kind %d = %q, want %q", k, got, want)
		}
	}
}
