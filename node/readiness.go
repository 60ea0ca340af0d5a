package node

import (
	"context"
	"fmt"
	"time"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/statemachine"
)

// Readiness. A node is ready while it has proved that its state is recent:
// a ReadIndex completed (its applied index reached the leader's commit
// index), and since then it has had a leader and completed a ReadIndex (or
// a proposal) at least every NotReadyAfter. A node that loses that, or
// learns that it was removed, stops being ready (/readyz 503, gRPC health
// NOT_SERVING, serializable reads refused with the reason) until it proves
// catch-up again. One goroutine, stayReady, owns the transitions; Stop ends it.

// unready says why a node that was ready is not any more.
type unready struct {
	state  membership.State // membership.StateIsolated or membership.StateRemoved
	reason string
}

// stayReady catches up, then watches; when the watch revokes readiness it
// catches up again. It returns when ctx ends or the replica is removed.
func (n *Node) stayReady(ctx context.Context) {
	for {
		if !n.catchUp(ctx) {
			return
		}
		n.publishMeta(ctx)
		state, reason, ok := n.watch(ctx)
		if !ok {
			return
		}
		n.revoke(state, reason)
		if state == membership.StateRemoved {
			return
		}
	}
}

// watch returns why the node must stop being ready, or false when ctx ends.
// It wakes on leader changes (Dragonboat's LeaderUpdated) and every quarter
// of the bound; it sends a ReadIndex of its own only when no read or
// proposal has proved the node's state for half the bound (an idle node
// sends one every NotReadyAfter/2). Each attempt is short (ReadyTimeout: one
// sent to a leader that just died is never answered) and a failed one is
// retried soon, so that a normal leader change, which ends well within the
// bound, does not revoke readiness.
func (n *Node) watch(ctx context.Context) (membership.State, string, bool) {
	bound := n.cfg.NotReadyAfter()
	attempt := min(n.cfg.ReadyTimeout, bound/4)
	t := time.NewTimer(bound / 4)
	defer t.Stop()
	var noLeaderSince time.Time
	moved := n.leaderMoved.wait()
	for {
		next := bound / 4
		select {
		case <-ctx.Done():
			return 0, "", false
		case <-n.removed.Done():
			return membership.StateRemoved, removedReason, true
		case <-moved:
		case <-t.C:
		}
		moved = n.leaderMoved.wait() // before the check: no event is missed
		now := time.Now()
		if n.leaderID() != 0 {
			noLeaderSince = time.Time{}
		} else if noLeaderSince.IsZero() {
			noLeaderSince = now
		}
		if !noLeaderSince.IsZero() {
			// A ReadIndex without a known leader is dropped unanswered:
			// don't send one, count the time without a leader.
			if d := now.Sub(noLeaderSince); d >= bound {
				return membership.StateIsolated, fmt.Sprintf("no leader for %s (limit %s): this node cannot reach a quorum of voters",
					d.Round(10*time.Millisecond), bound), true
			}
		} else if since := now.Sub(n.lastProof()); since >= bound/2 {
			rctx, cancel := context.WithTimeout(ctx, attempt)
			_, err := n.nh.SyncRead(rctx, ShardID, statemachine.AppliedQuery{})
			cancel()
			switch d := time.Since(n.lastProof()); {
			case err == nil:
				n.proved()
			case ctx.Err() != nil:
			case d >= bound:
				return membership.StateIsolated, fmt.Sprintf("no ReadIndex completed for %s (limit %s): %v",
					d.Round(10*time.Millisecond), bound, err), true
			default:
				next = bound / 10
			}
		}
		t.Reset(next)
	}
}

// revoke makes the node not ready, saying why.
func (n *Node) revoke(state membership.State, reason string) {
	n.why.Store(&unready{state: state, reason: reason})
	if n.ready.Swap(false) {
		n.log.Warn("not ready any more", "state", state, "reason", reason)
		if n.ctrl != nil {
			n.ctrl.Notify()
		}
	}
}

// proved records that a ReadIndex or a proposal completed just now: the
// node had a leader and a quorum.
func (n *Node) proved() { n.lastRead.Store(time.Now().UnixNano()) }

func (n *Node) lastProof() time.Time { return time.Unix(0, n.lastRead.Load()) }

// notReady is the error of a serializable read on a node that is not ready.
func (n *Node) notReady() error {
	e := &NotReadyError{Applied: n.appliedIndex(), Target: n.catchTarget.Load(), State: membership.StateCatchingUp}
	if w := n.why.Load(); w != nil {
		e.State, e.Reason = w.state, w.reason
	}
	return e
}

// readiness is why a node that was ready is not any more, as Status and
// Local report it; false while ready, or catching up the first time.
func (n *Node) readiness() (unready, bool) {
	if w := n.why.Load(); w != nil && !n.ready.Load() {
		return *w, true
	}
	return unready{}, false
}

// becomeReady marks the node ready after a catch-up proof.
func (n *Node) becomeReady() {
	membership.CrashPoint(membership.CrashBeforeReady)
	if n.isRemovedNow() {
		return
	}
	n.proved()
	n.why.Store(nil)
	n.ready.Store(true)
	if n.ctrl != nil {
		n.ctrl.Notify()
	}
}
