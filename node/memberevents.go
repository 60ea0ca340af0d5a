package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kvd-project/kvd/membership"
)

// Membership events. The node's view of the members (Members: the Raft
// membership, the metadata and each peer's probed status) changes at every
// controller step; one goroutine owned by the node (trackMembers) samples
// it and turns each difference into events (diffMembers, pure). The events
// go into a bounded ring (memberFeed) that watchers read at their own pace:
// a watcher that falls more than the ring behind is told that events were
// dropped and given the view as it is now. Nothing is kept per watcher, so
// a slow one costs the node nothing.

// MemberEventKind says what happened to a member. Its String is what the
// API and kvctl show; those strings never change.
type MemberEventKind int

// The kinds. Numbered like the API's MemberEventKind: don't renumber.
const (
	MemberJoined      MemberEventKind = 1 // a new member
	MemberCaughtUp    MemberEventKind = 2 // ready after it joined, restarted or was unreachable
	MemberPromoted    MemberEventKind = 3 // observer → voter
	MemberUnreachable MemberEventKind = 4 // its API stopped answering
	MemberReachable   MemberEventKind = 5 // its API answers again
	MemberRemoved     MemberEventKind = 6 // no longer a member
	LeaderChanged     MemberEventKind = 7 // another member leads (ID 0: none known)
	MemberReady       MemberEventKind = 8 // ready again after isolated or stalled
	MemberNotReady    MemberEventKind = 9 // answers, but is not ready any more
)

var memberEventNames = map[MemberEventKind]string{
	MemberJoined: "joined", MemberCaughtUp: "caught-up", MemberPromoted: "promoted",
	MemberUnreachable: "unreachable", MemberReachable: "reachable", MemberRemoved: "removed",
	LeaderChanged: "leader-changed", MemberReady: "ready", MemberNotReady: "not-ready",
}

func (k MemberEventKind) String() string {
	if s, ok := memberEventNames[k]; ok {
		return s
	}
	return "unknown"
}

// MemberEvent is one change in this node's view of the members.
type MemberEvent struct {
	Time   time.Time // when this node noticed it
	Kind   MemberEventKind
	ID     membership.ReplicaID
	Reason string
	// Member is the member's row after the change (before it, for a
	// removal); zero for a leader change to no leader.
	Member membership.MemberInfo
}

// MemberView is this node's view of the members at one moment, as Members
// answers it: rows sorted by ID.
type MemberView struct {
	Rows           []membership.MemberInfo
	ConfigChangeID uint64
	Removed        []membership.ReplicaID
}

// LeaderID is the leader in the view; 0 when none is known.
func (v MemberView) LeaderID() membership.ReplicaID {
	for _, r := range v.Rows {
		if r.Leader {
			return r.ID
		}
	}
	return 0
}

// memberEventPoll is how often trackMembers samples the view (it also looks
// at once on a leader change). The view itself changes at each controller
// step (every 500 ms, and on membership events), which offers no signal of
// its own; sampling it is a copy of a few rows.
const memberEventPoll = 200 * time.Millisecond

// memberRingSize is how many recent events the node keeps for watchers.
const memberRingSize = 1024

// trackMembers feeds n.members until ctx ends, then closes it.
func (n *Node) trackMembers(ctx context.Context) {
	defer n.members.close()
	t := time.NewTicker(memberEventPoll)
	defer t.Stop()
	for {
		moved := n.leaderMoved.wait() // before the look: no change is missed
		n.members.refresh(n.memberView, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-moved:
		case <-t.C:
		}
	}
}

// memberView is this node's view of the members now; false before the
// first probe.
func (n *Node) memberView() (MemberView, bool) {
	rows, ccid, ok := n.Members()
	return MemberView{Rows: rows, ConfigChangeID: ccid, Removed: n.RemovedIDs()}, ok
}

// WatchMembers starts a watch of this node's view of the members: the view
// now, and a MemberWatch whose Next returns the events after it. Refused
// (a *NotReadyError) while the node is not ready: it then probes nobody,
// and its view of the others is frozen; membership.ErrNoView until the
// node has a view.
func (n *Node) WatchMembers() (*MemberWatch, MemberView, error) {
	if err := n.consistent(context.Background(), Serializable); err != nil {
		return nil, MemberView{}, err
	}
	f := n.members
	f.refresh(n.memberView, time.Now()) // the view now, not as last sampled
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ok {
		return nil, MemberView{}, fmt.Errorf("%w (it is %s)", membership.ErrNoView, n.Status().State)
	}
	check := func() error { return n.consistent(context.Background(), Serializable) }
	return &MemberWatch{f: f, next: f.next, check: check}, f.view, nil
}

// MemberBatch is what a watcher reads at once: the events since its last
// read, in order. Dropped: it fell more than the ring behind, the events in
// between are lost, and View is the view now (Events is then empty).
type MemberBatch struct {
	Events  []MemberEvent
	Dropped bool
	View    MemberView
}

// MemberWatch is one watcher's place in the node's events. Not safe for
// concurrent use.
type MemberWatch struct {
	f     *memberFeed
	next  uint64       // sequence number of the next event to read
	check func() error // the node's readiness
}

// Err is nil while the node is ready; then why it is not (a
// *NotReadyError, or ErrStopped): its view is frozen, watch another node.
func (w *MemberWatch) Err() error { return w.check() }

// Changed returns a channel closed when events are added; take it before
// Next so that none is added between the two unnoticed.
func (w *MemberWatch) Changed() <-chan struct{} { return w.f.changed.wait() }

// Done is closed when the node stops: no more events will come.
func (w *MemberWatch) Done() <-chan struct{} { return w.f.done }

// Next returns the events added since the last call (none if there are
// none yet); it never waits.
func (w *MemberWatch) Next() MemberBatch {
	f := w.f
	f.mu.Lock()
	defer f.mu.Unlock()
	first := f.next - uint64(len(f.events))
	if w.next < first {
		w.next = f.next
		return MemberBatch{Dropped: true, View: f.view}
	}
	b := MemberBatch{Events: append([]MemberEvent(nil), f.events[w.next-first:]...)}
	w.next = f.next
	return b
}

// memberFeed holds the last view and the ring of recent events. The zero
// value is not usable: newMemberFeed.
type memberFeed struct {
	mu     sync.Mutex
	view   MemberView
	ok     bool          // view holds a view
	events []MemberEvent // the last memberRingSize events, oldest first
	next   uint64        // sequence number of the next event
	size   int

	changed broadcast
	done    chan struct{}
	once    sync.Once
}

func newMemberFeed(size int) *memberFeed {
	return &memberFeed{size: size, done: make(chan struct{})}
}

// refresh takes a new view from sample (nothing while it has none): its
// differences from the last one become events; the first view is the
// baseline and makes none. The view is sampled under the feed's lock, so
// that views taken by two callers are observed in the order taken.
func (f *memberFeed) refresh(sample func() (MemberView, bool), now time.Time) {
	f.mu.Lock()
	v, ok := sample()
	if !ok {
		f.mu.Unlock()
		return
	}
	var evs []MemberEvent
	if f.ok {
		evs = diffMembers(f.view, v, now)
	}
	f.view, f.ok = v, true
	for _, e := range evs {
		if len(f.events) == f.size {
			f.events = append(f.events[:0], f.events[1:]...)
		}
		f.events = append(f.events, e)
		f.next++
	}
	f.mu.Unlock()
	if len(evs) > 0 {
		f.changed.notify()
	}
}

func (f *memberFeed) close() { f.once.Do(func() { close(f.done) }) }
