package node

import (
	"context"
	"fmt"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/kvd-project/kvd/membership"
)

// This file implements membership.Host on the Dragonboat NodeHost (the
// member metadata, Metas and PutMeta, is in meta.go; MarkRemoved in
// removal.go).

// Local is the replica's own view from its applied membership (not
// linearizable).
func (n *Node) Local() membership.Local {
	return n.local(n.shardInfo())
}

func (n *Node) local(si dragonboat.ShardInfo, ok bool) membership.Local {
	l := membership.Local{Ready: n.ready.Load(), Applied: n.appliedIndex()}
	if ok {
		// A joiner replaying its log is in neither set yet: its role is
		// unknown until its membership says, not "voter".
		if _, voter := si.Replicas[uint64(n.id.ReplicaID)]; voter {
			l.Role = membership.RoleVoter
		}
		if si.IsNonVoting {
			l.Role = membership.RoleObserver
		}
		l.LeaderID = membership.ReplicaID(si.LeaderID)
	}
	var why *unready
	if u, revoked := n.readiness(); revoked {
		why = &u
	}
	l.State, l.Reason = stateOf(l.Role, l.Ready, n.isRemovedNow(), why)
	return l
}

// Membership reads the membership linearizably (ReadIndex then local read).
func (n *Node) Membership(ctx context.Context) (membership.Membership, error) {
	if n.stopped.Load() {
		return membership.Membership{}, ErrStopped
	}
	ctx, cancel := withDeadline(ctx, 5*time.Second)
	defer cancel()
	m, err := n.nh.SyncGetShardMembership(ctx, ShardID)
	if err != nil {
		return membership.Membership{}, fmt.Errorf("membership: %w", err)
	}
	n.proved() // a ReadIndex completed
	out := membership.Membership{
		ConfigChangeID: m.ConfigChangeID,
		Voters:         map[membership.ReplicaID]string{},
		Observers:      map[membership.ReplicaID]string{},
		Removed:        map[membership.ReplicaID]bool{},
	}
	for id, a := range m.Nodes {
		out.Voters[membership.ReplicaID(id)] = a
	}
	for id, a := range m.NonVotings {
		out.Observers[membership.ReplicaID(id)] = a
	}
	for id := range m.Removed {
		out.Removed[membership.ReplicaID(id)] = true
	}
	return out, nil
}

// AddObserver proposes AddNonVoting (any replica may; Raft forwards it to
// the leader). ccid guards against concurrent changes.
func (n *Node) AddObserver(ctx context.Context, id membership.ReplicaID, raftAddr string, ccid uint64) error {
	ctx, cancel := withDeadline(ctx, 10*time.Second)
	defer cancel()
	return n.nh.SyncRequestAddNonVoting(ctx, ShardID, uint64(id), raftAddr, ccid)
}

// AddVoter adds or promotes id; promotion needs the observer's own address.
func (n *Node) AddVoter(ctx context.Context, id membership.ReplicaID, raftAddr string, ccid uint64) error {
	ctx, cancel := withDeadline(ctx, 10*time.Second)
	defer cancel()
	return n.nh.SyncRequestAddReplica(ctx, ShardID, uint64(id), raftAddr, ccid)
}

// RemoveReplica removes id from the group for good.
func (n *Node) RemoveReplica(ctx context.Context, id membership.ReplicaID, ccid uint64) error {
	ctx, cancel := withDeadline(ctx, 10*time.Second)
	defer cancel()
	return n.nh.SyncRequestDeleteReplica(ctx, ShardID, uint64(id), ccid)
}

// Snapshot takes a local snapshot (metadata-only for the on-disk state
// machine) so that the newest snapshot embeds the current membership.
func (n *Node) Snapshot(ctx context.Context) error {
	ctx, cancel := withDeadline(ctx, 10*time.Second)
	defer cancel()
	_, err := n.nh.SyncRequestSnapshot(ctx, ShardID, dragonboat.SnapshotOption{})
	return err
}

// TransferLeader asks the leader to hand over to target.
func (n *Node) TransferLeader(target membership.ReplicaID) error {
	return n.nh.RequestLeaderTransfer(ShardID, uint64(target))
}

// Members is this node's published view (nil, false until its first probe).
func (n *Node) Members() ([]membership.MemberInfo, uint64, bool) {
	if n.ctrl == nil {
		return nil, 0, false
	}
	return n.ctrl.Members()
}

// RemovedIDs lists the replicas removed from the cluster (last probe).
func (n *Node) RemovedIDs() []membership.ReplicaID {
	if n.ctrl == nil {
		return nil
	}
	return n.ctrl.Removed()
}

// Reason explains this node's membership state; ready: whether the node
// is ready now.
func (n *Node) Reason(ready bool) string {
	if n.ctrl == nil {
		return ""
	}
	return n.ctrl.Reason(ready)
}
