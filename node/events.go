package node

import (
	"sync"

	"github.com/lni/dragonboat/v4/raftio"

	"github.com/kvd-project/kvd/membership"
)

// listener receives Dragonboat's events on Dragonboat's goroutines (which
// NodeHost.Close stops and waits for). It only records removal and wakes
// whoever waits: the membership controller, and the waiters on leader
// changes (catch-up, the readiness watch, Leave).
type listener struct{ n *Node }

func (l *listener) wake() {
	if l.n.ctrl != nil {
		l.n.ctrl.Notify()
	}
}

func (l *listener) LeaderUpdated(raftio.LeaderInfo) {
	l.wake()
	l.n.leaderMoved.notify()
}
func (l *listener) NodeHostShuttingDown()        {}
func (l *listener) NodeUnloaded(raftio.NodeInfo) {}
func (l *listener) NodeDeleted(info raftio.NodeInfo) {
	if info.ShardID == ShardID && membership.ReplicaID(info.ReplicaID) == l.n.id.ReplicaID && !l.n.stopped.Load() {
		l.n.markRemoved()
	}
}
func (l *listener) NodeReady(raftio.NodeInfo)                   { l.wake() }
func (l *listener) MembershipChanged(raftio.NodeInfo)           { l.wake() }
func (l *listener) ConnectionEstablished(raftio.ConnectionInfo) {}
func (l *listener) ConnectionFailed(raftio.ConnectionInfo)      {}
func (l *listener) SendSnapshotStarted(raftio.SnapshotInfo)     {}
func (l *listener) SendSnapshotCompleted(raftio.SnapshotInfo)   {}
func (l *listener) SendSnapshotAborted(raftio.SnapshotInfo)     {}
func (l *listener) SnapshotReceived(raftio.SnapshotInfo)        {}
func (l *listener) SnapshotRecovered(raftio.SnapshotInfo)       {}
func (l *listener) SnapshotCreated(raftio.SnapshotInfo)         {}
func (l *listener) SnapshotCompacted(raftio.SnapshotInfo)       {}
func (l *listener) LogCompacted(raftio.EntryInfo)               {}
func (l *listener) LogDBCompacted(raftio.EntryInfo)             {}

// broadcast wakes every waiter once per event. A waiter takes the channel
// (wait) before it checks its condition, so an event between the check and
// the select is not missed. The zero value is ready to use.
type broadcast struct {
	mu sync.Mutex
	c  chan struct{}
}

// wait returns a channel closed by the next notify.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c == nil {
		b.c = make(chan struct{})
	}
	return b.c
}

// notify wakes everyone waiting.
func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		close(b.c)
		b.c = nil
	}
}
