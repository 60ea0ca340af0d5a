package kvtest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kvd-project/kvd/client"
	"github.com/kvd-project/kvd/server"
)

// memberWatcher collects a WatchMembers channel's events.
type memberWatcher struct {
	t       *testing.T
	ch      <-chan client.MemberUpdate
	first   client.MemberUpdate
	seen    []client.MemberEvent
	updates []client.MemberUpdate // every one after the first
}

// resumed finds the update that resumed the watch elsewhere.
func (w *memberWatcher) resumed(u *client.MemberUpdate) bool {
	for _, x := range w.updates {
		if x.EventsLost && x.Members != nil {
			*u = x
			return true
		}
	}
	return false
}

func watchMembers(t *testing.T, ctx context.Context, cl *client.Client) *memberWatcher {
	t.Helper()
	w := &memberWatcher{t: t, ch: cl.WatchMembers(ctx)}
	select {
	case w.first = <-w.ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no first WatchMembers update within 10s")
	}
	if w.first.Err != nil || w.first.Members == nil {
		t.Fatalf("first update: %+v, want the member list", w.first)
	}
	return w
}

// kindsOf lists the kinds of the events seen about member id, in order.
func (w *memberWatcher) kindsOf(id client.MemberID) []string {
	var out []string
	for _, e := range w.seen {
		if e.MemberID == id {
			out = append(out, e.Kind.String())
		}
	}
	return out
}

// waitFor reads events until done says so, failing after timeout.
func (w *memberWatcher) waitFor(timeout time.Duration, what string, done func() bool) {
	w.t.Helper()
	deadline := time.After(timeout)
	for !done() {
		select {
		case u, ok := <-w.ch:
			if !ok || u.Err != nil {
				w.t.Fatalf("watch ended: %v", u.Err)
			}
			for _, e := range u.Events {
				w.t.Logf("event: %s %s %d %s", e.Time.Format("15:04:05.000"), e.Kind, e.MemberID, e.Reason)
			}
			w.seen = append(w.seen, u.Events...)
			w.updates = append(w.updates, u)
		case <-deadline:
			w.t.Fatalf("after %s, still waiting for %s; events: %v", timeout, what, w.seen)
		}
	}
}

// hasInOrder reports whether want is a subsequence of got.
func hasInOrder(got []string, want ...string) bool {
	for _, g := range got {
		if len(want) > 0 && g == want[0] {
			want = want[1:]
		}
	}
	return len(want) == 0
}

// A watcher on one node sees a fourth node join, catch up and be promoted,
// then a voter stop, each within seconds.
func TestWatchMembersSeesJoinPromotionAndFailure(t *testing.T) {
	fiveVoters := func(cfg *server.Config) { cfg.Node.Policy.Voters = 5 }
	c := NewCluster(t, 3, fiveVoters)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := watchMembers(t, ctx, newClient(t, c.Endpoint(0)))
	if n := len(w.first.Members.Members); n != 3 {
		t.Fatalf("first update lists %d members, want 3: %+v", n, w.first.Members)
	}

	j := c.Join(fiveVoters)
	joiner := client.MemberID(c.Server(j).Node().ID())
	w.waitFor(30*time.Second, "the joiner to join, catch up and be promoted", func() bool {
		return hasInOrder(w.kindsOf(joiner), "joined", "caught-up", "promoted")
	})

	victim := client.MemberID(c.Server(1).Node().ID())
	c.Stop(1)
	stopped := time.Now()
	w.waitFor(5*time.Second, fmt.Sprintf("member %d to be unreachable", victim), func() bool {
		return slices.Contains(w.kindsOf(victim), "unreachable")
	})
	t.Logf("unreachable %s after the stop", time.Since(stopped).Round(time.Millisecond))
}

// When the watched node stops, the watch goes on with another: an update
// with EventsLost and that node's member list, then its events. (Stop
// takes its whole 10 s timeout here: http.Server.Shutdown waits for the
// open stream, which nothing ends before the node stops.) Like Members,
// the watch needs no join secret where the cluster has one.
func TestWatchMembersResumesOnAnotherNode(t *testing.T) {
	c := NewCluster(t, 3, func(cfg *server.Config) { cfg.JoinSecret = "s3cret" })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := watchMembers(t, ctx, newClient(t, c.Endpoint(0), c.Endpoint(1), c.Endpoint(2)))
	// The first endpoint may have refused (no view yet right after it
	// became ready): stop the one that answered.
	i := slices.Index(c.Endpoints(), w.first.Members.Endpoint)
	gone := client.MemberID(c.Server(i).Node().ID())
	began := time.Now()
	c.Stop(i)
	t.Logf("node %d stopped in %s", i+1, time.Since(began).Round(time.Millisecond))
	var resumed client.MemberUpdate
	w.waitFor(10*time.Second, "the watch to resume", func() bool { return w.resumed(&resumed) })
	if n := len(resumed.Members.Members); n != 3 {
		t.Fatalf("resumed with %d members, want 3: %+v", n, resumed.Members)
	}
	listed := slices.ContainsFunc(resumed.Members.Members, func(m client.Member) bool {
		return m.ID == gone && m.State == "unreachable"
	})
	w.waitFor(5*time.Second, "the stopped node to be unreachable", func() bool {
		return listed || slices.Contains(w.kindsOf(gone), "unreachable")
	})
}
