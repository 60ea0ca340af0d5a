package node

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/statemachine"
)

// The Dragonboat side of a node: its NodeHost, the replica it runs, and the
// local facts read from them.

// openHost creates the NodeHost (Raft transport, LogDB) on the data dir.
func (n *Node) openHost() error {
	nh, err := dragonboat.NewNodeHost(n.nodeHostConfig())
	if err != nil {
		return fmt.Errorf("node: start raft host on %s: %w", n.cfg.RaftAddr, err)
	}
	n.nh = nh
	return nil
}

func (n *Node) nodeHostConfig() config.NodeHostConfig {
	logdb := config.GetTinyMemLogDBConfig()
	// One LogDB shard: kvd runs one Raft group, and each shard costs its own
	// memtables. This cannot change once data exists (config.go:47-50).
	logdb.Shards = 1
	logdb.KVWriteBufferSize = 8 << 20
	logdb.KVMaxWriteBufferNumber = 3
	dir := filepath.Join(n.cfg.DataDir, "raft")
	return config.NodeHostConfig{
		NodeHostDir:         dir,
		WALDir:              dir,
		RTTMillisecond:      uint64(n.cfg.RTT / time.Millisecond),
		RaftAddress:         n.cfg.RaftAddr,
		ListenAddress:       n.cfg.RaftListen,
		RaftEventListener:   n.events,
		SystemEventListener: n.events,
		MutualTLS:           n.cfg.TLS.Enabled(),
		CAFile:              n.cfg.TLS.CAFile,
		CertFile:            n.cfg.TLS.CertFile,
		KeyFile:             n.cfg.TLS.KeyFile,
		Expert: config.ExpertConfig{
			LogDB:        logdb,
			LogDBFactory: logDBFactory(dir),
			Engine: config.EngineConfig{
				ExecShards: 2, CommitShards: 2, ApplyShards: 2, SnapshotShards: 2, CloseShards: 2,
			},
		},
	}
}

func (n *Node) replicaConfig(nonVoting bool) config.Config {
	return config.Config{
		ShardID:             ShardID,
		ReplicaID:           uint64(n.id.ReplicaID),
		ElectionRTT:         n.cfg.ElectionTicks,
		HeartbeatRTT:        n.cfg.HeartbeatTicks,
		CheckQuorum:         true,
		PreVote:             true,
		SnapshotEntries:     n.cfg.SnapshotEntries,
		CompactionOverhead:  n.cfg.CompactionOverhead,
		OrderedConfigChange: true,
		IsNonVoting:         nonVoting,
		MaxInMemLogSize:     256 << 20,
	}
}

// hasRaftState tells whether Dragonboat already has a bootstrap record for
// the replica in the identity (or for any replica of the shard, when there
// is no identity: that is a broken data dir).
func (n *Node) hasRaftState(ident *membership.Identity) bool {
	if ident != nil {
		return n.nh.HasNodeInfo(ShardID, uint64(ident.ReplicaID))
	}
	for _, ni := range n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{}).LogInfo {
		if ni.ShardID == ShardID {
			return true
		}
	}
	return false
}

// startReplica marks the data dir started (durably, before Dragonboat may
// run the replica: from then on, losing its Raft state is refused as
// ErrStateLost, never taken for a first start) and starts the replica as
// the plan says.
func (n *Node) startReplica(plan membership.Plan) error {
	if err := membership.MarkStarted(n.cfg.DataDir); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	members := make(map[uint64]dragonboat.Target, len(plan.Members))
	for id, addr := range plan.Members {
		members[uint64(id)] = addr
	}
	create := statemachine.New(filepath.Join(n.cfg.DataDir, "sm"), statemachine.Config{
		Logger: n.cfg.Logger, CacheSize: 32 << 20, HistoryRevisions: n.cfg.WatchHistory, HistoryBytes: n.cfg.WatchHistoryBytes,
		SnapshotHistoryBytes: n.cfg.SnapshotHistoryBytes, OnApply: n.applied.fire})
	if err := n.nh.StartOnDiskReplica(members, plan.Join, create, n.replicaConfig(plan.NonVoting)); err != nil {
		if errors.Is(err, dragonboat.ErrReplicaRemoved) {
			n.markRemoved()
			return fmt.Errorf("%w: replica %d; restart with --rejoin to join under a new ID", membership.ErrRemoved, n.id.ReplicaID)
		}
		return fmt.Errorf("node: start replica %d: %w", n.id.ReplicaID, err)
	}
	n.publishFormed(n.id)
	n.session = n.nh.GetNoOPSession(ShardID)
	n.batch.propose = n.Propose
	n.log.Info("replica started", "origin", n.id.Origin, "restart", plan.Restart, "join", plan.Join,
		"non_voting", plan.NonVoting, "raft_addr", n.cfg.RaftAddr, "members", membership.FormatMembers(plan.Members))
	return nil
}

// shardInfo is the replica's local view of its shard (the one scan of
// GetNodeHostInfo's shards); false before Dragonboat has one.
func (n *Node) shardInfo() (dragonboat.ShardInfo, bool) {
	for _, si := range n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true}).ShardInfoList {
		if si.ShardID == ShardID && !si.Pending {
			return si, true
		}
	}
	return dragonboat.ShardInfo{}, false
}

// leaderID is the leader this replica knows (0 = none).
func (n *Node) leaderID() membership.ReplicaID {
	id, _, ok, err := n.nh.GetLeaderID(ShardID)
	if err != nil || !ok {
		return 0
	}
	return membership.ReplicaID(id)
}

// appliedIndex is the state machine's applied index (0 if unreadable).
func (n *Node) appliedIndex() uint64 {
	v, err := n.nh.StaleRead(ShardID, statemachine.AppliedQuery{})
	if err != nil {
		return 0
	}
	idx, _ := v.(uint64)
	return idx
}
