package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kvd-project/kvd/kvtest"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
	"github.com/kvd-project/kvd/server"
)

// fakeMemberWatch serves WatchMembers only: the member list, then events,
// then it ends the stream with end (or, when nil, waits for the client).
type fakeMemberWatch struct {
	kvdv1connect.UnimplementedClusterHandler
	members *kvdv1.MembersResponse
	events  []*kvdv1.MemberEvent
	end     error
}

func (f *fakeMemberWatch) WatchMembers(ctx context.Context, _ *connect.Request[kvdv1.WatchMembersRequest], s *connect.ServerStream[kvdv1.WatchMembersResponse]) error {
	if err := s.Send(&kvdv1.WatchMembersResponse{Members: f.members, NodeId: 1}); err != nil {
		return err
	}
	if err := s.Send(&kvdv1.WatchMembersResponse{Events: f.events, NodeId: 1}); err != nil {
		return err
	}
	if f.end != nil {
		return f.end
	}
	<-ctx.Done()
	return nil
}

func startMemberWatch(t *testing.T, f *fakeMemberWatch) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(kvdv1connect.NewClusterHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

var watchT0 = time.Date(2026, 11, 30, 1, 2, 3, 456e6, time.UTC)

func memberEvent(kind kvdv1.MemberEventKind, id uint64, role kvdv1.Role, state, reason string) *kvdv1.MemberEvent {
	return &kvdv1.MemberEvent{Time: timestamppb.New(watchT0), Kind: kind, MemberId: id, Reason: reason,
		Member: &kvdv1.Member{Id: id, Role: role, State: state}}
}

func twoMembers() *kvdv1.MembersResponse {
	return &kvdv1.MembersResponse{LeaderId: 1, Members: []*kvdv1.Member{
		{Id: 1, Role: kvdv1.Role_ROLE_VOTER, State: "ready", Leader: true},
		{Id: 7, Role: kvdv1.Role_ROLE_OBSERVER, State: "catching-up", Reason: "catching up"},
	}}
}

// The list first, then one line per event; --count ends it.
func TestMembersWatchPrintsEvents(t *testing.T) {
	addr := startMemberWatch(t, &fakeMemberWatch{members: twoMembers(), events: []*kvdv1.MemberEvent{
		memberEvent(kvdv1.MemberEventKind_MEMBER_EVENT_KIND_CAUGHT_UP, 7, kvdv1.Role_ROLE_OBSERVER, "ready", "was catching-up; applied 9"),
		memberEvent(kvdv1.MemberEventKind_MEMBER_EVENT_KIND_PROMOTED, 7, kvdv1.Role_ROLE_VOTER, "ready", "observer → voter"),
	}})
	out, errOut, code := runKvctl(t, "", "--endpoints", addr, "members", "--watch", "--count", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{
		" member          1                 voter     ready, leader",
		" member          7                 observer  catching-up: catching up",
		"2026-11-30T01:02:03.456Z  caught-up       7                 observer  was catching-up; applied 9",
		"2026-11-30T01:02:03.456Z  promoted        7                 voter     observer → voter",
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i := range want {
		if !strings.HasSuffix(lines[i], want[i]) {
			t.Errorf("line %d = %q, want it to end with %q", i+1, lines[i], want[i])
		}
	}
}

// -o json prints one object per line; a stream that breaks resumes on the
// next endpoint, with an events-lost line and that node's list.
func TestMembersWatchJSONResumes(t *testing.T) {
	broken := startMemberWatch(t, &fakeMemberWatch{members: twoMembers(),
		events: []*kvdv1.MemberEvent{memberEvent(kvdv1.MemberEventKind_MEMBER_EVENT_KIND_UNREACHABLE, 7, kvdv1.Role_ROLE_OBSERVER, "unreachable", "connection refused")},
		end:    connect.NewError(connect.CodeUnavailable, errors.New("not ready"))})
	other := startMemberWatch(t, &fakeMemberWatch{members: twoMembers(),
		events: []*kvdv1.MemberEvent{memberEvent(kvdv1.MemberEventKind_MEMBER_EVENT_KIND_REMOVED, 7, kvdv1.Role_ROLE_OBSERVER, "unreachable", "removed")}})
	out, errOut, code := runKvctl(t, "", "--endpoints", broken+","+other, "-o", "json", "members", "--watch", "--count", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var kinds []string
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("line %q is not one JSON object: %v", line, err)
		}
		kinds = append(kinds, l["kind"].(string))
	}
	want := "member member unreachable events-lost member member removed"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("kinds %q, want %q\n%s", got, want, out)
	}
	if !strings.Contains(out, `{"time":"2026-11-30T01:02:03.456Z","kind":"removed","member_id":7,"role":"observer","state":"unreachable","reason":"removed"}`) {
		t.Errorf("removed line not as expected:\n%s", out)
	}
}

// Against a real cluster whose voter target is 5 (the target is odd): kvctl
// members --watch prints the three members, then a fourth node joining,
// catching up and being promoted, in that order.
func TestMembersWatchAgainstRealCluster(t *testing.T) {
	fiveVoters := func(cfg *server.Config) { cfg.Node.Policy.Voters = 5 }
	c := kvtest.NewCluster(t, 3, fiveVoters)
	settled(t, c) // so that the first changes are the joiner's
	out := &lockedBuffer{}
	var errOut bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		app := newApp(out, &errOut)
		eps := "--endpoints=" + strings.Join(c.Endpoints(), ",")
		done <- app.RunContext(ctx, permuteArgs(app, []string{"kvctl", eps, "-o", "json", "members", "--watch"}))
	}()
	waitLines(t, out, 10*time.Second, "the member list", func(ls []memberLine) bool { return len(ls) >= 3 })
	j := c.Join(fiveVoters)
	id := uint64(c.Server(j).Node().ID())
	var joiner []string // the joiner's events, in order
	waitLines(t, out, 30*time.Second, "the joiner to be promoted", func(ls []memberLine) bool {
		joiner = joiner[:0]
		for _, l := range ls {
			if l.MemberID == id && l.Kind != "member" {
				joiner = append(joiner, l.Kind)
			}
		}
		return slices.Contains(joiner, "promoted")
	})
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("kvctl members --watch ended with %v, want context.Canceled; stderr %q", err, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kvctl members --watch still running 10s after its context ended")
	}
	ls := lines(t, out)
	if ls[0].Kind != "member" || ls[1].Kind != "member" || ls[2].Kind != "member" {
		t.Errorf("the watch did not begin with the three members:\n%s", out)
	}
	first := func(kind string) int { return slices.Index(joiner, kind) }
	if jo, cu, pr := first("joined"), first("caught-up"), first("promoted"); jo < 0 || cu < jo || pr < cu {
		t.Fatalf("the joiner's events %v, want joined, caught-up, promoted in that order:\n%s", joiner, out)
	}
}

// lockedBuffer is a bytes.Buffer that kvctl writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines parses the complete JSON lines of members --watch so far.
func lines(t *testing.T, b *lockedBuffer) []memberLine {
	t.Helper()
	s := b.String()
	var ls []memberLine
	for _, line := range strings.Split(s[:strings.LastIndex(s, "\n")+1], "\n") {
		if line == "" {
			continue
		}
		var l memberLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		ls = append(ls, l)
	}
	return ls
}

// waitLines waits until ok holds for the lines printed so far.
func waitLines(t *testing.T, b *lockedBuffer, timeout time.Duration, what string, ok func([]memberLine) bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !ok(lines(t, b)); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; kvctl printed:\n%s", timeout, what, b)
		}
	}
}

// settled waits until every node's view lists the voters ready.
func settled(t *testing.T, c *kvtest.Cluster) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < c.Size(); i++ {
		for {
			resp, err := c.ClusterClient(i).Members(context.Background(), connect.NewRequest(&kvdv1.MembersRequest{}))
			ready := 0
			if err == nil {
				for _, m := range resp.Msg.GetMembers() {
					if m.GetState() == "ready" {
						ready++
					}
				}
			}
			if err == nil && ready == c.Size() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d's view not settled after 20s (%d ready, %v)", i+1, ready, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
