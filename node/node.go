package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/client"
	"github.com/lni/dragonboat/v4/config"

	"github.com/kvd-project/kvd/statemachine"
)

// ReadMode selects how a read is served.
type ReadMode int

const (
	// Linearizable reads run ReadIndex through the leader.
	Linearizable ReadMode = iota
	// Serializable reads are local; refused until the node has caught up.
	Serializable
)

// Role of a replica in the Raft group.
type Role int

const (
	RoleUnknown Role = iota
	RoleVoter
	RoleObserver
)

func (r Role) String() string {
	switch r {
	case RoleVoter:
		return "voter"
	case RoleObserver:
		return "observer"
	}
	return "unknown"
}

// Node is one running replica.
type Node struct {
	cfg     Config
	log     *slog.Logger
	id      Identity
	nh      *dragonboat.NodeHost
	session *client.Session
	metrics *metrics

	ready   atomic.Bool
	stopped atomic.Bool

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// Start opens (or creates) the replica in cfg.DataDir and starts it. It
// returns once Dragonboat has started the replica; the node becomes Ready
// after its first successful ReadIndex.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg = withDefaults(cfg)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "node")
	installDragonboatLogger(cfg.Logger)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("node: create data dir: %w", err)
	}
	ident, err := loadIdentity(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	nh, err := dragonboat.NewNodeHost(nodeHostConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("node: start raft host on %s: %w", cfg.RaftAddr, err)
	}
	n := &Node{cfg: cfg, log: log, nh: nh}
	started := false
	defer func() {
		if !started {
			nh.Close()
		}
	}()

	plan, err := decideStart(localState{Identity: ident, HasRaftState: hasRaftState(nh, ident)}, cfg)
	if err != nil {
		return nil, err
	}
	if ident == nil {
		if err := saveIdentity(cfg.DataDir, plan.Identity); err != nil {
			return nil, fmt.Errorf("node: save identity: %w", err)
		}
	}
	n.id = plan.Identity
	n.log = log.With("replica", uint64(n.id.ReplicaID))
	members := make(map[uint64]dragonboat.Target, len(plan.Members))
	for id, addr := range plan.Members {
		members[uint64(id)] = addr
	}
	smCfg := statemachine.Config{Logger: cfg.Logger}
	create := statemachine.New(filepath.Join(cfg.DataDir, "sm"), smCfg)
	if err := nh.StartOnDiskReplica(members, plan.Join, create, n.replicaConfig(plan.NonVoting)); err != nil {
		return nil, fmt.Errorf("node: start replica %d: %w", n.id.ReplicaID, err)
	}
	n.session = nh.GetNoOPSession(ShardID)
	n.metrics = newMetrics(n, cfg.Registry)
	n.log.Info("replica started", "origin", n.id.Origin, "restart", plan.Restart,
		"non_voting", plan.NonVoting, "raft_addr", cfg.RaftAddr, "members", FormatMembers(plan.Members))

	loopCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.catchUp(loopCtx)
	}()
	started = true
	return n, nil
}

func withDefaults(cfg Config) Config {
	d := DefaultConfig()
	if cfg.RTT == 0 {
		cfg.RTT = d.RTT
	}
	if cfg.ElectionTicks == 0 {
		cfg.ElectionTicks = d.ElectionTicks
	}
	if cfg.HeartbeatTicks == 0 {
		cfg.HeartbeatTicks = d.HeartbeatTicks
	}
	if cfg.SnapshotEntries == 0 {
		cfg.SnapshotEntries = d.SnapshotEntries
		if cfg.CompactionOverhead == 0 {
			cfg.CompactionOverhead = d.CompactionOverhead
		}
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = d.ReadyTimeout
	}
	if cfg.RaftListen == "" {
		cfg.RaftListen = cfg.RaftAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

func nodeHostConfig(cfg Config) config.NodeHostConfig {
	logdb := config.GetTinyMemLogDBConfig()
	// One LogDB shard: kvd runs one Raft group, and each shard costs its own
	// memtables. This cannot change once data exists (config.go:47-50).
	logdb.Shards = 1
	logdb.KVWriteBufferSize = 8 << 20
	logdb.KVMaxWriteBufferNumber = 3
	dir := filepath.Join(cfg.DataDir, "raft")
	return config.NodeHostConfig{
		NodeHostDir:    dir,
		WALDir:         dir,
		RTTMillisecond: uint64(cfg.RTT / time.Millisecond),
		RaftAddress:    cfg.RaftAddr,
		ListenAddress:  cfg.RaftListen,
		Expert: config.ExpertConfig{
			LogDB: logdb,
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
func hasRaftState(nh *dragonboat.NodeHost, ident *Identity) bool {
	if ident != nil {
		return nh.HasNodeInfo(ShardID, uint64(ident.ReplicaID))
	}
	for _, ni := range nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{}).LogInfo {
		if ni.ShardID == ShardID {
			return true
		}
	}
	return false
}

// Stop stops the replica and the Raft host. Idempotent.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		n.stopped.Store(true)
		n.cancel()
		n.wg.Wait()
		n.nh.Close()
		n.metrics.unregister()
		n.log.Info("replica stopped")
	})
}

// ID is this replica's ID.
func (n *Node) ID() ReplicaID { return n.id.ReplicaID }

// Identity is the persisted identity.
func (n *Node) Identity() Identity { return n.id }

// Ready reports whether the node has caught up (first ReadIndex succeeded).
func (n *Node) Ready() bool { return n.ready.Load() }

// withDeadline gives ctx a deadline (Dragonboat requires one).
func withDeadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// Propose replicates cmds as one Raft entry and returns their results once
// the entry is committed and applied.
func (n *Node) Propose(ctx context.Context, cmds []statemachine.Command) ([]statemachine.Result, error) {
	if n.stopped.Load() {
		return nil, ErrStopped
	}
	ctx, cancel := withDeadline(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	r, err := n.nh.SyncPropose(ctx, n.session, statemachine.EncodeCommands(nil, cmds))
	n.metrics.observePropose(start, err)
	if err != nil {
		return nil, fmt.Errorf("propose: %w", err)
	}
	if r.Value != 1 {
		return nil, fmt.Errorf("%w: %s", ErrBadCommand, r.Data)
	}
	res, err := statemachine.DecodeResults(r.Data)
	if err != nil {
		return nil, fmt.Errorf("propose: decode results: %w", err)
	}
	if len(res) != len(cmds) {
		return nil, fmt.Errorf("propose: %d results for %d commands", len(res), len(cmds))
	}
	return res, nil
}

// Read runs a state machine query (statemachine.GetQuery, RangeQuery, ...).
func (n *Node) Read(ctx context.Context, q interface{}, mode ReadMode) (interface{}, error) {
	if n.stopped.Load() {
		return nil, ErrStopped
	}
	start := time.Now()
	var (
		v   interface{}
		err error
	)
	if mode == Serializable {
		if !n.ready.Load() {
			return nil, &NotReadyError{Applied: n.appliedIndex()}
		}
		v, err = n.nh.StaleRead(ShardID, q)
	} else {
		ctx, cancel := withDeadline(ctx, 5*time.Second)
		defer cancel()
		v, err = n.nh.SyncRead(ctx, ShardID, q)
	}
	n.metrics.observeRead(start, mode, err)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return v, nil
}

func (n *Node) appliedIndex() uint64 {
	v, err := n.nh.StaleRead(ShardID, statemachine.AppliedQuery{})
	if err != nil {
		return 0
	}
	idx, _ := v.(uint64)
	return idx
}

// catchUp loops ReadIndex until one succeeds: from then on the node's applied
// index has reached the leader's commit index as of that read, and the node
// serves serializable reads. Then it publishes its member metadata.
func (n *Node) catchUp(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, n.cfg.ReadyTimeout)
		_, err := n.nh.SyncRead(rctx, ShardID, statemachine.AppliedQuery{})
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if attempt%10 == 0 {
			n.log.Info("waiting to catch up", "attempt", attempt, "applied", n.appliedIndex(), "err", err)
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, time.Second)
	}
	n.ready.Store(true)
	n.log.Info("caught up", "applied", n.appliedIndex())
	n.publishMeta(ctx)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// MemberMeta is the replicated metadata of a member (reserved keyspace).
type MemberMeta struct {
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	Origin   Origin `json:"origin"`
}

const metaMemberPrefix = "member/"

func metaMemberKey(id ReplicaID) []byte { return fmt.Appendf(nil, "%s%d", metaMemberPrefix, id) }

// publishMeta makes sure the replicated metadata has this node's addresses.
func (n *Node) publishMeta(ctx context.Context) {
	want := MemberMeta{RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr, Origin: n.id.Origin}
	val, _ := json.Marshal(want)
	key := metaMemberKey(n.id.ReplicaID)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		v, err := n.Read(ctx, statemachine.GetQuery{Key: key, Meta: true}, Linearizable)
		if err == nil {
			if kv := v.(statemachine.GetResult).KV; kv != nil && string(kv.Value) == string(val) {
				return
			}
			_, err = n.Propose(ctx, []statemachine.Command{{Ops: []statemachine.Op{{Type: statemachine.OpMetaPut, Key: key, Value: val}}}})
			if err == nil {
				n.log.Info("published member metadata", "api_addr", want.APIAddr)
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

// MembersMeta returns the replicated metadata of every member that published it.
func (n *Node) MembersMeta(ctx context.Context, mode ReadMode) (map[ReplicaID]MemberMeta, error) {
	v, err := n.Read(ctx, statemachine.RangeQuery{
		Start: []byte(metaMemberPrefix), End: statemachine.PrefixEnd([]byte(metaMemberPrefix)), Meta: true,
	}, mode)
	if err != nil {
		return nil, err
	}
	out := map[ReplicaID]MemberMeta{}
	for _, kv := range v.(statemachine.RangeResult).KVs {
		var id uint64
		if _, err := fmt.Sscanf(string(kv.Key[len(metaMemberPrefix):]), "%d", &id); err != nil {
			continue
		}
		var m MemberMeta
		if json.Unmarshal(kv.Value, &m) == nil {
			out[ReplicaID(id)] = m
		}
	}
	return out, nil
}
