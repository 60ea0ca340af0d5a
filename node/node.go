package node

import (
	"context"
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

	"github.com/kvd-project/kvd/membership"
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

// Node is one running replica.
type Node struct {
	cfg     Config
	log     *slog.Logger
	id      membership.Identity
	nh      *dragonboat.NodeHost
	session *client.Session
	batch   batcher
	metrics *metrics
	ctrl    *membership.Controller
	events  *listener

	ready       atomic.Bool
	why         atomic.Pointer[unready] // why a node that was ready is not
	lastRead    atomic.Int64            // unix ns of the last ReadIndex or proposal that completed
	leaderC     chan struct{}           // LeaderUpdated events for the readiness watch
	stopped     atomic.Bool
	catchTarget atomic.Uint64
	removed     chan struct{}
	removeOnce  sync.Once
	leaving     atomic.Bool
	clusterID   atomic.Pointer[string] // once known (clusterid.go)

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// Start opens (or creates) the replica in cfg.DataDir and starts it; a
// joining node first asks a member to admit it (retrying until ctx ends).
// It returns once Dragonboat has started the replica; the node becomes
// Ready after its first successful ReadIndex.
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
	flags := membership.StartFlags{
		DataDir: cfg.DataDir, ReplicaID: cfg.ReplicaID, RaftAddr: cfg.RaftAddr, APIAddr: cfg.APIAddr,
		InitialMembers: cfg.InitialMembers, Join: cfg.Seeds != nil, Rejoin: cfg.Rejoin,
	}
	ident, err := membership.LoadIdentity(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if membership.IsRemoved(cfg.DataDir) {
		plan, err := membership.DecideStart(membership.LocalState{Identity: ident, Removed: true}, flags)
		if err != nil {
			return nil, err
		}
		if plan.Wipe {
			var old uint64
			if ident != nil {
				old = uint64(ident.ReplicaID)
			}
			log.Warn("this replica was removed from the cluster: wiping its state to join under a new ID (--rejoin)", "old_replica", old)
			if err := membership.Wipe(cfg.DataDir, "raft", "sm"); err != nil {
				return nil, fmt.Errorf("node: wipe removed replica: %w", err)
			}
			ident = nil
		}
	}

	n := &Node{cfg: cfg, log: log, removed: make(chan struct{}), leaderC: make(chan struct{}, 1)}
	n.events = &listener{n: n}
	if cfg.Peers != nil {
		// Created before the NodeHost: its event listener wakes it.
		n.ctrl = membership.NewController(n, cfg.Peers, cfg.Policy, cfg.DataDir, cfg.Logger)
	}
	nh, err := dragonboat.NewNodeHost(n.nodeHostConfig())
	if err != nil {
		return nil, fmt.Errorf("node: start raft host on %s: %w", cfg.RaftAddr, err)
	}
	n.nh = nh
	started := false
	defer func() {
		if !started {
			nh.Close()
		}
	}()

	local := membership.LocalState{Identity: ident, HasRaftState: hasRaftState(nh, ident), Started: membership.HasStarted(cfg.DataDir)}
	switch {
	case local.HasRaftState:
		n.publishFormed(*ident)
	case ident == nil && cfg.BootstrapExpect > 0:
		// Cold start from zero: agree with the discovered peers on the
		// initial members, or find that a cluster exists and join it.
		if err := n.form(ctx, &flags); err != nil {
			return nil, err
		}
	case ident == nil && len(cfg.InitialMembers) > 1 && cfg.Seeds != nil:
		// A static member with an empty data dir: its disk may have been
		// lost. Ask the members it can reach whether its ID has run.
		if id, ok := membership.InitialMemberID(flags); ok {
			local.RanBefore = membership.RanBefore(ctx, cfg.Peers, cfg.Seeds(), id)
		}
	}
	plan, err := membership.DecideStart(local, flags)
	if err != nil {
		return nil, err
	}
	if plan.NewID {
		if ident != nil {
			// A new ID for a node whose old replica lost its Raft state
			// (--rejoin): the old replica's data goes; raft/ has none of it.
			if err := membership.Wipe(cfg.DataDir, "sm"); err != nil {
				return nil, fmt.Errorf("node: wipe replica %d: %w", ident.ReplicaID, err)
			}
		}
		if plan.Identity.Origin == membership.OriginJoin {
			plan.Identity.JoinToken = membership.NewJoinToken()
		}
		if err := membership.SaveIdentity(cfg.DataDir, plan.Identity); err != nil {
			return nil, fmt.Errorf("node: save identity: %w", err)
		}
	}
	membership.CrashPoint(membership.CrashAfterIdentity)
	n.id = plan.Identity
	n.log = log.With("replica", uint64(n.id.ReplicaID))
	if plan.Replaces != 0 {
		n.log.Warn("rejoining under a new replica ID (--rejoin): the old one goes first", "old_replica", uint64(plan.Replaces))
		if err := membership.RemoveOld(ctx, cfg.Peers, cfg.Seeds, plan.Replaces, n.log); err != nil {
			return nil, err
		}
	}
	if plan.CallJoin {
		req := membership.JoinRequest{ReplicaID: n.id.ReplicaID, RaftAddr: cfg.RaftAddr, APIAddr: cfg.APIAddr, Token: n.id.JoinToken}
		n.log.Info("joining the cluster", "seeds", cfg.Seeds())
		if err := membership.JoinCluster(ctx, cfg.Peers, cfg.Seeds, req, n.log); err != nil {
			if errors.Is(err, membership.ErrRemoved) {
				// Removed before its first start: mark it, so that
				// --rejoin does what the message says.
				if merr := membership.MarkRemoved(cfg.DataDir, n.id.ReplicaID); merr != nil {
					n.log.Error("write removal marker", "err", merr)
				}
			}
			return nil, err
		}
		membership.CrashPoint(membership.CrashAfterJoin)
	}
	// Durable before Dragonboat may run the replica: from here on, losing
	// its Raft state is refused (ErrStateLost), never taken for a first start.
	if err := membership.MarkStarted(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	members := make(map[uint64]dragonboat.Target, len(plan.Members))
	for id, addr := range plan.Members {
		members[uint64(id)] = addr
	}
	create := statemachine.New(filepath.Join(cfg.DataDir, "sm"), statemachine.Config{Logger: cfg.Logger, CacheSize: 32 << 20})
	if err := nh.StartOnDiskReplica(members, plan.Join, create, n.replicaConfig(plan.NonVoting)); err != nil {
		if errors.Is(err, dragonboat.ErrReplicaRemoved) {
			n.markRemoved()
			return nil, fmt.Errorf("%w: replica %d; restart with --rejoin to join under a new ID", membership.ErrRemoved, n.id.ReplicaID)
		}
		return nil, fmt.Errorf("node: start replica %d: %w", n.id.ReplicaID, err)
	}
	n.publishFormed(n.id)
	n.session = nh.GetNoOPSession(ShardID)
	n.batch.propose = n.Propose
	n.metrics = newMetrics(n, cfg.Registry)
	n.batch.observe = func(k int) { n.metrics.batch.Observe(float64(k)) }
	n.log.Info("replica started", "origin", n.id.Origin, "restart", plan.Restart, "join", plan.Join,
		"non_voting", plan.NonVoting, "raft_addr", cfg.RaftAddr, "members", membership.FormatMembers(plan.Members))

	loopCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.batch.ctx = loopCtx
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.stayReady(loopCtx)
	}()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.settleClusterID(loopCtx)
	}()
	if n.ctrl != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.ctrl.Run(loopCtx)
		}()
	}
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
	if cfg.Policy == (membership.Policy{}) {
		cfg.Policy = d.Policy
		// The autopilot retires voters above the target: keep every
		// initial voter of a larger static cluster (odd: 4 → 5).
		cfg.Policy.Voters = max(cfg.Policy.Voters, len(cfg.InitialMembers)|1)
	}
	if cfg.RaftListen == "" {
		cfg.RaftListen = cfg.RaftAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
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
func hasRaftState(nh *dragonboat.NodeHost, ident *membership.Identity) bool {
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

// form runs the --bootstrap-expect agreement and turns its outcome into
// start-up flags: the agreed initial members, or a join.
func (n *Node) form(ctx context.Context, flags *membership.StartFlags) error {
	id, err := membership.PendingID(n.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	self := membership.Peer{ID: id, RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr}
	f := n.cfg.Formation
	if f == nil {
		f = new(membership.Formation)
	}
	d, err := membership.Form(ctx, n.cfg.Peers, n.cfg.Seeds, self, n.cfg.BootstrapExpect, f, n.log)
	if err != nil {
		return err
	}
	flags.ReplicaID = id
	if d.Action == membership.FormBootstrap {
		flags.InitialMembers = map[membership.ReplicaID]string{}
		for _, m := range d.Members {
			flags.InitialMembers[m.ID] = m.RaftAddr
		}
		flags.Join = false
		n.log.Info("bootstrapping the agreed initial members", "members", membership.FormatMembers(flags.InitialMembers))
		return nil
	}
	n.log.Info("a cluster exists: joining it", "reason", d.Reason)
	return nil
}

// publishFormed tells peers forming a cluster that this node runs one.
func (n *Node) publishFormed(id membership.Identity) {
	if n.cfg.Formation == nil {
		return
	}
	pi := membership.PeerIdentity{Peer: membership.Peer{ID: id.ReplicaID, RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr}, Formed: true}
	for mid, addr := range id.InitialMembers {
		pi.Members = append(pi.Members, membership.Peer{ID: mid, RaftAddr: addr})
	}
	n.cfg.Formation.Set(pi)
}

// markRemoved records, durably, that this replica was removed, and wakes
// whoever waits on Removed.
func (n *Node) markRemoved() {
	n.removeOnce.Do(func() {
		if err := membership.MarkRemoved(n.cfg.DataDir, n.id.ReplicaID); err != nil {
			n.log.Error("write removal marker", "err", err)
		}
		n.revoke("removed", removedReason)
		if n.leaving.Load() {
			n.log.Info("left the cluster", "replica", uint64(n.id.ReplicaID))
		} else {
			n.log.Error("this replica was removed from the cluster; it stops serving. " +
				"The leader's autopilot removes a voter that was down for --dead-after once an observer took its seat, " +
				"and retires a surplus voter (more voters than --voters: usually one that came back after its seat was refilled; not a fault). " +
				"Restart with --rejoin to join again under a new ID, as an observer")
		}
		close(n.removed)
	})
}

// isRemoved waits briefly for the removal event, which Dragonboat
// publishes right after the self-removal is applied.
func (n *Node) isRemoved() bool {
	select {
	case <-n.removed:
		return true
	case <-time.After(200 * time.Millisecond):
		return false
	}
}

func (n *Node) isRemovedNow() bool {
	select {
	case <-n.removed:
		return true
	default:
		return false
	}
}

// Removed is closed when this replica learns that it was removed.
func (n *Node) Removed() <-chan struct{} { return n.removed }

// Stop stops the replica and the Raft host. Idempotent.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		n.stopped.Store(true)
		n.cancel()
		n.batch.stop()
		n.wg.Wait()
		n.nh.Close()
		n.metrics.unregister()
		n.log.Info("replica stopped")
	})
}

// ID is this replica's ID.
func (n *Node) ID() membership.ReplicaID { return n.id.ReplicaID }

// RaftAddr is the advertised Raft address.
func (n *Node) RaftAddr() string { return n.cfg.RaftAddr }

// Identity is the persisted identity.
func (n *Node) Identity() membership.Identity { return n.id }

// Ready reports whether the node serves serializable reads: it has caught
// up, and has had a leader and a quorum within NotReadyAfter (readiness.go).
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
	n.proved()
	res, err := statemachine.ParseResult(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCommand, err)
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
			return nil, n.notReady()
		}
		v, err = n.nh.StaleRead(ShardID, q)
	} else {
		ctx, cancel := withDeadline(ctx, 5*time.Second)
		defer cancel()
		if v, err = n.nh.SyncRead(ctx, ShardID, q); err == nil {
			n.proved()
		}
	}
	n.metrics.observeRead(start, mode, err)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return v, nil
}

// ReadAll runs several queries with one consistency check: for
// Linearizable, one ReadIndex round serves them all (the local state is read
// once it has applied at least the leader's commit index, which is what a
// linearizable read needs); for Serializable, they read local state.
func (n *Node) ReadAll(ctx context.Context, qs []interface{}, mode ReadMode) ([]interface{}, error) {
	if n.stopped.Load() {
		return nil, ErrStopped
	}
	start := time.Now()
	if mode == Serializable {
		if !n.ready.Load() {
			return nil, n.notReady()
		}
	} else {
		ctx, cancel := withDeadline(ctx, 5*time.Second)
		_, err := n.nh.SyncRead(ctx, ShardID, statemachine.AppliedQuery{})
		cancel()
		if err != nil {
			n.metrics.observeRead(start, mode, err)
			return nil, fmt.Errorf("read: %w", err)
		}
		n.proved()
	}
	out := make([]interface{}, len(qs))
	for i, q := range qs {
		v, err := n.nh.StaleRead(ShardID, q)
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		out[i] = v
	}
	n.metrics.observeRead(start, mode, nil)
	return out, nil
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
// serves serializable reads. It reports false when ctx ends or the replica
// was removed first.
func (n *Node) catchUp(ctx context.Context) bool {
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		// A ReadIndex sent before the replica knows a leader is dropped
		// unanswered; wait for the first heartbeat instead.
		for tries := 0; tries < 100; tries++ {
			if _, _, ok, err := n.nh.GetLeaderID(ShardID); ok || err != nil {
				break
			}
			if !sleep(ctx, 10*time.Millisecond) {
				return false
			}
		}
		rctx, cancel := context.WithTimeout(ctx, n.cfg.ReadyTimeout)
		_, err := n.nh.SyncRead(rctx, ShardID, statemachine.AppliedQuery{})
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || n.isRemovedNow() {
			return false
		}
		n.refreshCatchUpTarget(ctx)
		if attempt%10 == 0 {
			n.log.Info("catching up", "attempt", attempt, "applied", n.appliedIndex(), "target", n.catchTarget.Load(), "err", err)
		}
		if !sleep(ctx, backoff) {
			return false
		}
		// Short: each attempt is one ReadIndex round, and every pause
		// after the data arrived adds to the joiner's time to serve.
		backoff = min(backoff*2, 100*time.Millisecond)
	}
	if n.isRemovedNow() {
		return false
	}
	n.becomeReady()
	n.log.Info("caught up", "applied", n.appliedIndex())
	return true
}

// refreshCatchUpTarget asks a seed (or the leader, once its address is
// known) for its applied index, to say how far behind this node is.
func (n *Node) refreshCatchUpTarget(ctx context.Context) {
	if n.cfg.Peers == nil {
		return
	}
	var addrs []string
	if metas, err := n.Metas(ctx); err == nil {
		if m, ok := metas[n.Local().LeaderID]; ok && m.APIAddr != "" {
			addrs = append(addrs, m.APIAddr)
		}
	}
	if n.askTarget(ctx, addrs) || n.cfg.Seeds == nil {
		return
	}
	// The seeds only when the leader did not answer: listing them may
	// ask a registry.
	n.askTarget(ctx, n.cfg.Seeds())
}

// askTarget stores the first applied index one of addrs reports.
func (n *Node) askTarget(ctx context.Context, addrs []string) bool {
	for _, a := range addrs {
		if a == n.cfg.APIAddr {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		st, err := n.cfg.Peers.Status(cctx, a)
		cancel()
		if err == nil && st.Applied > 0 {
			n.catchTarget.Store(st.Applied)
			return true
		}
	}
	return false
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
