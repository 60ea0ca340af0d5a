package kvtest_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/kvtest"
	"github.com/kvd-project/kvd/membership"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/server"
)

// writer puts distinct keys through one node until halted and remembers
// the acknowledged ones.
type writer struct {
	mu    sync.Mutex
	acked map[string]string
	stop  chan struct{}
	done  chan struct{}
}

func startWriter(c *kvtest.Cluster, i int) *writer {
	w := &writer{acked: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	kv := c.KV(i)
	go func() {
		defer close(w.done)
		for k := 0; ; k++ {
			select {
			case <-w.stop:
				return
			default:
			}
			key, val := fmt.Sprintf("w%05d", k), fmt.Sprintf("v%d", k)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := kv.Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte(key), Value: []byte(val)}))
			cancel()
			if err == nil {
				w.mu.Lock()
				w.acked[key] = val
				w.mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w
}

func (w *writer) halt() map[string]string {
	close(w.stop)
	<-w.done
	return w.acked
}

// checkAcked reads every acknowledged write linearizably through node i.
func checkAcked(t *testing.T, c *kvtest.Cluster, i int, acked map[string]string) {
	t.Helper()
	for key, val := range acked {
		got, err := c.Get(i, key, false)
		if err != nil || got != val {
			t.Fatalf("node %d: %q = %q, %v; want %q (acknowledged)", i+1, key, got, err, val)
		}
	}
}

// membershipOf is node i's linearizable read of the Raft membership.
func membershipOf(t *testing.T, c *kvtest.Cluster, i int) (membership.Membership, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Server(i).Node().Membership(ctx)
}

// waitMembership waits until node i's membership satisfies ok.
func waitMembership(t *testing.T, c *kvtest.Cluster, i int, timeout time.Duration, what string, ok func(membership.Membership) bool) membership.Membership {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last membership.Membership
	var lastErr error
	for time.Now().Before(deadline) {
		ms, err := membershipOf(t, c, i)
		if err == nil && ok(ms) {
			return ms
		}
		if err == nil {
			last = ms
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("after %s: %s; node %d's membership: voters %v observers %v (%v)", timeout, what, i+1, last.Voters, last.Observers, lastErr)
	return last
}

func shape(voters, observers int) func(membership.Membership) bool {
	return func(ms membership.Membership) bool { return len(ms.Voters) == voters && len(ms.Observers) == observers }
}

// A voter cut off on its Raft port only (its API still answers the
// leader's probes) is judged down by its Raft progress and replaced within
// about --dead-after plus a few seconds; no acknowledged write is lost.
func TestVoterCutOffOnRaftIsReplaced(t *testing.T) {
	deadAfter := 2 * time.Second
	dead := func(cfg *server.Config) { cfg.Node.Policy.DeadAfter = deadAfter }
	c := kvtest.NewCluster(t, 1, dead)
	a := c.Join(dead, c.RaftProxy())
	b := c.Join(dead, c.RaftProxy())
	waitMembership(t, c, 0, 60*time.Second, "3 voters", shape(3, 0))
	o := c.Join(dead)
	c.WaitReady(60 * time.Second)
	waitMembership(t, c, 0, 30*time.Second, "3 voters + 1 observer", shape(3, 1))
	leader := c.Leader()
	victim := a
	if leader == a {
		victim = b
	}
	victimID := c.Server(victim).Node().ID()
	w := startWriter(c, leader)
	time.Sleep(500 * time.Millisecond)

	cut := time.Now()
	c.CutRaft(victim)
	waitMembership(t, c, leader, deadAfter+20*time.Second, fmt.Sprintf("voter %d (cut off on Raft) replaced", victimID),
		func(ms membership.Membership) bool {
			return ms.RoleOf(victimID) == membership.RoleUnknown && len(ms.Voters) == 3
		})
	took := time.Since(cut)
	acked := w.halt()
	t.Logf("voter %d cut off on Raft, replaced after %s (dead after %s); %d acknowledged writes", victimID, took.Round(100*time.Millisecond), deadAfter, len(acked))
	// Its API answered all along: only Raft progress can have told.
	if st := c.Server(victim).Node().Status(); st.ReplicaID != victimID {
		t.Fatalf("victim status: %+v", st)
	}
	ms, _ := membershipOf(t, c, leader)
	if ms.RoleOf(c.Server(o).Node().ID()) != membership.RoleVoter {
		t.Fatalf("the observer did not take the seat: voters %v", ms.Voters)
	}
	for _, i := range []int{leader, o} {
		checkAcked(t, c, i, acked)
	}
	select {
	case <-c.Server(victim).Node().Removed():
	case <-time.After(20 * time.Second):
		t.Fatalf("the cut-off voter did not learn that it was removed (reason %q)", c.Server(victim).Node().Status().Reason)
	}
	c.Stop(victim)
}

// A voter that comes back after an observer took its seat leaves the
// cluster above its voter target; the leader retires the surplus voter
// (the one that was down), so the cluster returns to 3 voters and no
// acknowledged write is lost. The voters here never judge anyone dead
// (--dead-after 1h), while the observer takes a seat after 1 s: that opens
// the window in which the old voter comes back before the leader removes
// it for as long as the test needs.
func TestVoterBackAfterItsSeatWasRefilledIsRetired(t *testing.T) {
	c := kvtest.NewCluster(t, 3, func(cfg *server.Config) { cfg.Node.Policy.DeadAfter = time.Hour })
	o := c.Join(func(cfg *server.Config) { cfg.Node.Policy.DeadAfter = time.Second })
	c.WaitReady(60 * time.Second)
	waitMembership(t, c, 0, 30*time.Second, "3 voters + 1 observer", shape(3, 1))
	leader := c.Leader()
	v := (leader + 1) % 3
	vID, oID := c.Server(v).Node().ID(), c.Server(o).Node().ID()
	w := startWriter(c, leader)
	time.Sleep(300 * time.Millisecond)

	c.Stop(v)
	waitMembership(t, c, leader, 30*time.Second, "the observer takes the stopped voter's seat",
		func(ms membership.Membership) bool { return ms.RoleOf(oID) == membership.RoleVoter })
	c.Start(v)
	ms := waitMembership(t, c, leader, 30*time.Second, "back to 3 voters",
		func(ms membership.Membership) bool { return len(ms.Voters) == 3 })
	acked := w.halt()
	if ms.RoleOf(vID) != membership.RoleUnknown || ms.RoleOf(oID) != membership.RoleVoter {
		t.Fatalf("retired the wrong voter: voters %v (the one that was down: %d)", ms.Voters, vID)
	}
	rows, _, _ := c.Server(leader).Node().Members()
	for _, r := range rows {
		if r.Leader && !strings.Contains(r.Reason, fmt.Sprintf("surplus voter %d", vID)) {
			t.Errorf("the leader's reason does not say what it did: %q", r.Reason)
		}
	}
	select {
	case <-c.Server(v).Node().Removed():
	case <-time.After(20 * time.Second):
		t.Fatalf("the retired voter did not learn that it was removed (status %+v)", c.Server(v).Node().Status())
	}
	c.Stop(v)
	for i := 0; i < c.Size(); i++ {
		if i != v {
			checkAcked(t, c, i, acked)
		}
	}
	t.Logf("voter %d retired; %d acknowledged writes all present", vID, len(acked))
}
