package node

import (
	"context"
	"fmt"
	"sync"

	"github.com/kvd-project/kvd/statemachine"
)

// Watchers read the change history from local state (statemachine's
// HistoryQuery) and wait for the next apply between reads: they never hold
// events in memory, so a slow watcher costs nothing but its own reads, and
// every event a watcher sees is applied here (a linearizable read after it
// sees at least its revision).

// applySignal is closed and replaced after every Update that applied
// entries: a watcher takes the current channel, reads, and waits on it.
type applySignal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newApplySignal() *applySignal { return &applySignal{ch: make(chan struct{})} }

// next returns a channel closed at the next apply.
func (s *applySignal) next() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

// fire wakes every waiter; the state machine calls it after each apply.
func (s *applySignal) fire(uint64) {
	s.mu.Lock()
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

// NextApply returns a channel closed once this node applies more entries.
// Take it before reading History so that no apply falls between the two.
func (n *Node) NextApply() <-chan struct{} { return n.applied.next() }

// History reads change events from local state. Like a serializable read
// it is refused while the node is not ready: a watcher must not be served
// from a node that may be behind without knowing it.
func (n *Node) History(ctx context.Context, q statemachine.HistoryQuery) (statemachine.HistoryResult, error) {
	// Not n.read: watch polls are not client reads in the read metrics.
	if err := n.consistent(ctx, Serializable); err != nil {
		return statemachine.HistoryResult{}, err
	}
	v, err := n.nh.StaleRead(ShardID, q)
	if err != nil {
		return statemachine.HistoryResult{}, fmt.Errorf("watch: %w", err)
	}
	return v.(statemachine.HistoryResult), nil
}

// HistoryEnabled reports whether this node keeps watch events.
func (n *Node) HistoryEnabled() bool { return n.cfg.WatchHistory >= 0 }
