package node

import (
	"context"
	"fmt"
	"time"

	"github.com/kvd-project/kvd/membership"
)

// handOverWait bounds how long a leaving leader waits for another replica
// to take over before it asks for its own removal anyway.
const handOverWait = 5 * time.Second

// Leave removes this replica from the cluster (--leave-on-exit): a leader
// first hands leadership to another ready voter; the removal is refused if
// the reachable voters left would not be a quorum.
func (n *Node) Leave(ctx context.Context) error {
	rows, ccid, ok := n.Members()
	if err := membership.CheckRemoval(rows, ccid, ok, n.id.ReplicaID); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	if err := n.handOver(ctx, rows); err != nil {
		return err
	}
	n.leaving.Store(true)
	return n.removeSelf(ctx)
}

// handOver: a leader asks another ready voter to take over and waits until
// one has (woken by LeaderUpdated), at most handOverWait. A transfer can be
// dropped: Dragonboat's target skips its campaign while it has committed
// entries not yet applied ("campaign skipped, pending config change"), as
// right after a burst of writes; so it is asked again, each voter in turn,
// every transferWait.
func (n *Node) handOver(ctx context.Context, rows []membership.MemberInfo) error {
	if n.leaderID() != n.id.ReplicaID {
		return nil
	}
	var targets []membership.ReplicaID
	for _, r := range rows {
		if r.ID != n.id.ReplicaID && r.Role == membership.RoleVoter && r.Ready && r.DownFor == 0 {
			targets = append(targets, r.ID)
		}
	}
	moved := func(id membership.ReplicaID) bool { return id != n.id.ReplicaID }
	deadline := time.Now().Add(handOverWait)
	for i := 0; len(targets) > 0 && time.Now().Before(deadline); i++ {
		to := targets[i%len(targets)]
		n.log.Info("leaving: transferring leadership", "to", uint64(to), "attempt", i+1)
		if err := n.TransferLeader(to); err != nil {
			return fmt.Errorf("leave: transfer leadership: %w", err)
		}
		if n.awaitLeader(ctx, min(transferWait, time.Until(deadline)), moved) || ctx.Err() != nil {
			break
		}
	}
	return ctx.Err()
}

// transferWait is how long one leadership transfer is given: an election
// or so (100–200 ms here) and room for a busy machine.
const transferWait = time.Second

// removeAttempt bounds one proposal of this replica's removal: the leaving
// replica may never apply it (once the others applied it they stop
// talking to it), so past this it asks the others whether it is gone.
const removeAttempt = 2 * time.Second

// removeSelf proposes this replica's removal until it is applied here or a
// member reports it removed (a few attempts: the membership may change
// under it). Learning of the removal ends a pending proposal at once: the
// removal cancels ctx (context.AfterFunc, unregistered on return).
func (n *Node) removeSelf(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(n.removed, cancel)
	defer stop()
	for attempt := 1; ; attempt++ {
		mctx, mcancel := context.WithTimeout(ctx, removeAttempt)
		ms, err := n.Membership(mctx)
		mcancel()
		if n.isRemovedNow() {
			return nil
		}
		if err == nil {
			if ms.RoleOf(n.id.ReplicaID) == membership.RoleUnknown {
				return nil
			}
			actx, acancel := context.WithTimeout(ctx, removeAttempt)
			err = n.RemoveReplica(actx, n.id.ReplicaID, ms.ConfigChangeID)
			acancel()
			if err == nil || n.isRemoved() {
				return nil
			}
		}
		if n.ctrl != nil && n.ctrl.CheckRemoved(ctx) {
			return nil
		}
		if attempt >= 5 || ctx.Err() != nil {
			if n.isRemovedNow() {
				return nil
			}
			return fmt.Errorf("leave: %w", err)
		}
		sleep(ctx, time.Duration(attempt)*100*time.Millisecond)
	}
}
