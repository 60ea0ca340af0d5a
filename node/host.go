package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/raftio"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/statemachine"
)

// This file implements membership.Host on the Dragonboat NodeHost.

// Local is the replica's own view from its applied membership (not
// linearizable).
func (n *Node) Local() membership.Local {
	l := membership.Local{Ready: n.ready.Load(), Applied: n.appliedIndex()}
	l.State, l.Reason = n.readiness()
	for _, si := range n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true}).ShardInfoList {
		if si.ShardID != ShardID || si.Pending {
			continue
		}
		// A joiner replaying its log is in neither set yet: its role is
		// unknown until its membership says, not "voter".
		if _, ok := si.Replicas[uint64(n.id.ReplicaID)]; ok {
			l.Role = membership.RoleVoter
		}
		if si.IsNonVoting {
			l.Role = membership.RoleObserver
		}
		l.LeaderID = membership.ReplicaID(si.LeaderID)
	}
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

const metaMemberPrefix = "member/"

func metaMemberKey(id membership.ReplicaID) []byte {
	return strconv.AppendUint([]byte(metaMemberPrefix), uint64(id), 10)
}

// Metas reads every member's replicated metadata from the local state
// machine (it may lag; the membership is the authority on who is a member).
func (n *Node) Metas(ctx context.Context) (map[membership.ReplicaID]membership.Meta, error) {
	v, err := n.nh.StaleRead(ShardID, statemachine.RangeQuery{
		Start: []byte(metaMemberPrefix), End: statemachine.PrefixEnd([]byte(metaMemberPrefix)), Meta: true,
	})
	if err != nil {
		return nil, fmt.Errorf("read member metadata: %w", err)
	}
	out := map[membership.ReplicaID]membership.Meta{}
	for _, kv := range v.(statemachine.RangeResult).KVs {
		id, err := strconv.ParseUint(string(kv.Key[len(metaMemberPrefix):]), 10, 64)
		if err != nil {
			continue
		}
		var m membership.Meta
		if json.Unmarshal(kv.Value, &m) == nil {
			out[membership.ReplicaID(id)] = m
		}
	}
	return out, nil
}

// PutMeta writes a member's metadata through Raft.
func (n *Node) PutMeta(ctx context.Context, id membership.ReplicaID, m membership.Meta) error {
	val, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = n.Propose(ctx, []statemachine.Command{{Ops: []statemachine.Op{{Type: statemachine.OpMetaPut, Key: metaMemberKey(id), Value: val}}}})
	return err
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

// MarkRemoved records that this replica was removed (membership.Host).
func (n *Node) MarkRemoved() { go n.markRemoved() }

// Reason explains this node's membership state.
func (n *Node) Reason() string {
	if n.ctrl == nil {
		return ""
	}
	return n.ctrl.Reason()
}

// publishMeta makes sure the replicated metadata has this node's addresses.
func (n *Node) publishMeta(ctx context.Context) {
	want := membership.Meta{RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr, Origin: n.id.Origin,
		TokenHash: membership.HashToken(n.id.JoinToken)}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		metas, err := n.Metas(ctx)
		if err == nil {
			if metas[n.id.ReplicaID] == want {
				return
			}
			if err = n.PutMeta(ctx, n.id.ReplicaID, want); err == nil {
				n.log.Info("published member metadata", "api_addr", want.APIAddr)
				if n.ctrl != nil {
					n.ctrl.Notify() // refresh the members view with it
				}
				return
			}
		}
		if errors.Is(err, ErrStopped) {
			return
		}
		n.log.Debug("publish member metadata", "err", err)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// listener receives Dragonboat's events on its own goroutines; it only
// marks removal and wakes the membership controller and the readiness watch.
type listener struct{ n *Node }

func (l *listener) wake() {
	if l.n.ctrl != nil {
		l.n.ctrl.Notify()
	}
}

func (l *listener) LeaderUpdated(raftio.LeaderInfo) {
	l.wake()
	select {
	case l.n.leaderC <- struct{}{}:
	default:
	}
}
func (l *listener) NodeHostShuttingDown()        {}
func (l *listener) NodeUnloaded(raftio.NodeInfo) {}
func (l *listener) NodeDeleted(info raftio.NodeInfo) {
	if info.ShardID == ShardID && membership.ReplicaID(info.ReplicaID) == l.n.id.ReplicaID && !l.n.stopped.Load() {
		go l.n.markRemoved()
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

// Leave removes this replica from the cluster (--leave-on-exit): a leader
// first hands leadership to another ready voter; the removal is refused if
// the reachable voters left would not be a quorum.
func (n *Node) Leave(ctx context.Context) error {
	rows, ccid, ok := n.Members()
	if err := membership.CheckRemoval(rows, ccid, ok, n.id.ReplicaID); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	if l := n.Local(); l.LeaderID == n.id.ReplicaID {
		for _, r := range rows {
			if r.ID != n.id.ReplicaID && r.Role == membership.RoleVoter && r.Ready && r.DownFor == 0 {
				n.log.Info("leaving: transferring leadership", "to", uint64(r.ID))
				if err := n.TransferLeader(r.ID); err != nil {
					return fmt.Errorf("leave: transfer leadership: %w", err)
				}
				break
			}
		}
		for deadline := time.Now().Add(5 * time.Second); n.Local().LeaderID == n.id.ReplicaID && time.Now().Before(deadline); {
			if !sleep(ctx, 50*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	n.leaving.Store(true)
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
