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
// it has (woken by LeaderUpdated), at most handOverWait.
func (n *Node) handOver(ctx context.Context, rows []membership.MemberInfo) error {
	if n.leaderID() != n.id.ReplicaID {
		return nil
	}
	for _, r := range rows {
		if r.ID != n.id.ReplicaID && r.Role == membership.RoleVoter && r.Ready && r.DownFor == 0 {
			n.log.Info("leaving: transferring leadership", "to", uint64(r.ID))
			if err := n.TransferLeader(r.ID); err != nil {
				return fmt.Errorf("leave: transfer leadership: %w", err)
			}
			break
		}
	}
	n.awaitLeader(ctx, handOverWait, func(id membership.ReplicaID) bool { return id != n.id.ReplicaID })
	return ctx.Err()
}

// removeSelf proposes this replica's removal until it is applied (a few
// attempts: the membership may change under it).
func (n *Node) removeSelf(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		ms, err := n.Membership(ctx)
		if n.isRemoved() {
			return nil // our removal was applied here: the shard stopped
		}
		if err == nil {
			if ms.RoleOf(n.id.ReplicaID) == membership.RoleUnknown {
				return nil
			}
			err = n.RemoveReplica(ctx, n.id.ReplicaID, ms.ConfigChangeID)
			if err == nil || n.isRemoved() {
				return nil
			}
		}
		if attempt >= 5 || ctx.Err() != nil {
			return fmt.Errorf("leave: %w", err)
		}
		sleep(ctx, time.Duration(attempt)*100*time.Millisecond)
	}
}
