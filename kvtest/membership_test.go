package kvtest_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/lni/dragonboat/v4"

	"github.com/kvd-project/kvd/kvtest"
	"github.com/kvd-project/kvd/membership"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
	"github.com/kvd-project/kvd/server"
)

func stayObserver(c *server.Config) { c.Node.Policy.Voters = 1 }

// Two observers racing for the last voter seat with the same config-change
// ID: exactly one wins; the other is rejected (stale config-change ID) or
// dropped by Raft (one config change pending at a time: it times out), and
// the voter count grows by exactly one.
func TestTwoObserversRaceForOneSeat(t *testing.T) {
	c := kvtest.NewCluster(t, 1)
	a := c.Join(stayObserver)
	b := c.Join(stayObserver)
	c.WaitReady(30 * time.Second)
	n := c.Server(0).Node()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ms, err := n.Membership(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raceCtx, cancelRace := context.WithTimeout(ctx, 3*time.Second)
	defer cancelRace()
	if len(ms.Voters) != 1 || len(ms.Observers) != 2 {
		t.Fatalf("want 1 voter + 2 observers, got %+v", ms)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for k, i := range []int{a, b} {
		wg.Add(1)
		go func(k int, s *server.Server) {
			defer wg.Done()
			// Each observer promotes itself, as the autopilot does.
			errs[k] = s.Node().AddVoter(raceCtx, s.Node().ID(), s.Node().RaftAddr(), ms.ConfigChangeID)
		}(k, c.Server(i))
	}
	wg.Wait()
	won, rejected := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, dragonboat.ErrRejected), errors.Is(err, dragonboat.ErrTimeout),
			errors.Is(err, dragonboat.ErrSystemBusy), errors.Is(err, dragonboat.ErrShardNotReady):
			rejected++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if won != 1 || rejected != 1 {
		t.Fatalf("won %d, rejected %d (errors %v): want exactly one winner", won, rejected, errs)
	}
	time.Sleep(time.Second) // a dropped change must not come back later
	after, err := n.Membership(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Voters) != 2 || len(after.Observers) != 1 {
		t.Fatalf("after the race: %d voters, %d observers; want 2 and 1", len(after.Voters), len(after.Observers))
	}
}

// A stranger's Join that claims a member's ID and Raft address (a joined
// observer, or the initial member) is refused with PermissionDenied over the
// API, and the member's API address in Members stays what it was: the
// leader keeps probing the real node.
func TestStrangerJoinCannotRewriteAddress(t *testing.T) {
	c := kvtest.NewCluster(t, 1)
	j := c.Join(stayObserver)
	c.WaitReady(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := kvdv1connect.NewClusterClient(http.DefaultClient, "http://"+c.Endpoint(0))
	for _, victim := range []int{j, 0} {
		n := c.Server(victim).Node()
		_, err := cl.Join(ctx, connect.NewRequest(&kvdv1.JoinRequest{
			ReplicaId: uint64(n.ID()), RaftAddr: n.RaftAddr(), ApiAddr: "127.0.0.1:1", JoinToken: "guessed",
		}))
		if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "join token") {
			t.Fatalf("stranger's join as replica %d: %v; want PermissionDenied naming the join token", n.ID(), err)
		}
	}
	// The members view is refreshed by probes every 500 ms: 2 s holds a few.
	time.Sleep(2 * time.Second)
	resp, err := cl.Members(ctx, connect.NewRequest(&kvdv1.MembersRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Msg.Members) != 2 {
		t.Fatalf("members: %v", resp.Msg.Members)
	}
	for _, m := range resp.Msg.Members {
		want := c.Endpoint(0)
		if m.Id == uint64(c.Server(j).Node().ID()) {
			want = c.Endpoint(j)
		}
		if m.ApiAddr != want || !m.Ready {
			t.Fatalf("member %d: API address %q (ready %v), want %q", m.Id, m.ApiAddr, m.Ready, want)
		}
	}
}

// Join is idempotent and refuses conflicts: the same replica again is
// accepted; another ID at a member's raft address, or a removed ID, is not.
func TestAdmitRules(t *testing.T) {
	c := kvtest.NewCluster(t, 1)
	j := c.Join(stayObserver)
	c.WaitReady(30 * time.Second)
	n := c.Server(0).Node()
	joiner := c.Server(j).Node()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	again := membership.JoinRequest{ReplicaID: joiner.ID(), RaftAddr: joiner.RaftAddr(), APIAddr: c.Endpoint(j),
		Token: joiner.Identity().JoinToken}
	if err := membership.Admit(ctx, n, again); err != nil {
		t.Fatalf("admitting a member again: %v", err)
	}
	clash := membership.JoinRequest{ReplicaID: 424242, RaftAddr: joiner.RaftAddr()}
	if err := membership.Admit(ctx, n, clash); !errors.Is(err, membership.ErrBadFlags) {
		t.Fatalf("another ID at a member's address: %v", err)
	}
	ms, _ := n.Membership(ctx)
	if err := n.RemoveReplica(ctx, joiner.ID(), ms.ConfigChangeID); err != nil {
		t.Fatal(err)
	}
	if err := membership.Admit(ctx, n, again); !errors.Is(err, membership.ErrRemoved) {
		t.Fatalf("re-admitting a removed ID: %v", err)
	}
	select {
	case <-joiner.Removed():
	case <-time.After(10 * time.Second):
		t.Fatal("the removed node did not notice its removal")
	}
}

// A leader that leaves hands leadership over first (woken by the leader
// change, well within its 5 s bound), then is removed: the others keep a
// leader and two voters, and the one that left learns it was removed.
func TestLeaderLeaves(t *testing.T) {
	c := kvtest.NewCluster(t, 3)
	l := c.Leader()
	n := c.Server(l).Node()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := n.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	took := time.Since(start)
	select {
	case <-n.Removed():
	case <-ctx.Done():
		t.Fatal("the node that left never learned it was removed")
	}
	c.Stop(l)
	next := c.Leader()
	ms, err := c.Server(next).Node().Membership(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms.Voters) != 2 || !ms.Removed[n.ID()] {
		t.Fatalf("after leave: voters %v, removed %v; want 2 voters and %d removed", ms.Voters, ms.Removed, n.ID())
	}
	// A hand-over takes an election or so (100–200 ms here); the bound
	// is 5 s, so a wait that missed the leader change would show.
	if took > 3*time.Second {
		t.Fatalf("leave took %s", took)
	}
}
