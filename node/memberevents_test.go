package node

import (
	"testing"
	"time"

	"github.com/kvd-project/kvd/membership"
)

// observe has f take v as the view now.
func (f *memberFeed) observe(v MemberView) {
	f.refresh(func() (MemberView, bool) { return v, true }, time.Now())
}

// feedWith is a feed of ring size n whose baseline view has member 1.
func feedWith(n int) *memberFeed {
	f := newMemberFeed(n)
	f.observe(view(row(1, leads)))
	return f
}

// flip makes member 1 isolated, then ready: two events.
func flip(f *memberFeed) {
	f.observe(view(row(1, leads, inState(membership.StateIsolated, "no leader"))))
	f.observe(view(row(1, leads)))
}

// The first view makes no events; a watcher reads each event once, in
// order, and is woken when there are new ones.
func TestMemberFeedDeliversInOrder(t *testing.T) {
	f := feedWith(8)
	w := &MemberWatch{f: f, next: f.next}
	if b := w.Next(); len(b.Events) != 0 || b.Dropped {
		t.Fatalf("baseline made events: %+v", b)
	}
	changed := w.Changed()
	flip(f)
	select {
	case <-changed:
	case <-time.After(time.Second):
		t.Fatal("watcher not woken")
	}
	b := w.Next()
	if len(b.Events) != 2 || b.Events[0].Kind != MemberNotReady || b.Events[1].Kind != MemberReady || b.Dropped {
		t.Fatalf("got %+v, want not-ready then ready", b)
	}
	if b := w.Next(); len(b.Events) != 0 {
		t.Fatalf("events read twice: %+v", b)
	}
}

// A watcher that falls more than the ring behind is told so and given the
// view now; then it goes on from there.
func TestMemberFeedDropsBeyondTheRing(t *testing.T) {
	f := feedWith(3)
	slow := &MemberWatch{f: f, next: f.next}
	flip(f) // 2 events: still in the ring
	if b := slow.Next(); len(b.Events) != 2 || b.Dropped {
		t.Fatalf("within the ring: got %+v", b)
	}
	flip(f)
	flip(f) // 4 events into a ring of 3
	b := slow.Next()
	if !b.Dropped || len(b.Events) != 0 || len(b.View.Rows) != 1 || b.View.Rows[0].State != membership.StateReady {
		t.Fatalf("beyond the ring: got %+v, want dropped with the view now", b)
	}
	flip(f)
	if b := slow.Next(); len(b.Events) != 2 || b.Dropped {
		t.Fatalf("after the drop: got %+v", b)
	}
}

// No view, no events and no baseline.
func TestMemberFeedWithoutAView(t *testing.T) {
	f := newMemberFeed(3)
	f.refresh(func() (MemberView, bool) { return MemberView{}, false }, time.Now())
	if f.ok || f.next != 0 {
		t.Fatalf("a missing view was taken: ok %v, next %d", f.ok, f.next)
	}
}

// A watcher's Done is closed when the feed closes (the node stops).
func TestMemberFeedClose(t *testing.T) {
	f := feedWith(3)
	w := &MemberWatch{f: f}
	f.close()
	f.close() // idempotent
	select {
	case <-w.Done():
	default:
		t.Fatal("Done not closed")
	}
}
