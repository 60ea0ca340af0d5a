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
	t     *testing.T
	ch    <-chan client.MemberUpdate
	first client.MemberUpdate
	seen  []client.MemberEvent
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
