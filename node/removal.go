package node

import (
	"time"

	"github.com/kvd-project/kvd/membership"
)

const removedReason = "removed from the cluster; restart with --rejoin to join under a new ID"

// MarkRemoved records that this replica was removed (membership.Host). It
// is done when it returns: no goroutine is left to finish it after Stop.
func (n *Node) MarkRemoved() { n.markRemoved() }

// markRemoved records, durably, that this replica was removed, and wakes
// whoever waits on Removed. Only the first call acts. Its callers: Start
// (Dragonboat refused a removed replica), the event listener (NodeDeleted,
// on Dragonboat's event goroutine) and the membership controller (a member
// reports this replica removed).
func (n *Node) markRemoved() {
	n.removeOnce.Do(func() {
		if err := membership.MarkRemoved(n.cfg.DataDir, n.id.ReplicaID); err != nil {
			n.log.Error("write removal marker", "err", err)
		}
		n.revoke(membership.StateRemoved, removedReason)
		if n.leaving.Load() {
			n.log.Info("left the cluster")
		} else {
			n.log.Error("this replica was removed from the cluster; it stops serving. " +
				"The leader's autopilot removes a voter that was down for --dead-after once an observer took its seat, " +
				"and retires a surplus voter (more voters than --voters: usually one that came back after its seat was refilled; not a fault). " +
				"Restart with --rejoin to join again under a new ID, as an observer")
		}
		n.setRemoved()
	})
}

// Removed is closed when this replica learns that it was removed.
func (n *Node) Removed() <-chan struct{} { return n.removed.Done() }

// isRemoved waits briefly for the removal event, which Dragonboat
// publishes right after the self-removal is applied.
func (n *Node) isRemoved() bool {
	select {
	case <-n.removed.Done():
		return true
	case <-time.After(200 * time.Millisecond):
		return false
	}
}

func (n *Node) isRemovedNow() bool {
	select {
	case <-n.removed.Done():
		return true
	default:
		return false
	}
}
