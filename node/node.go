package node

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/client"

	"github.com/kvd-project/kvd/membership"
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
	leaderMoved broadcast               // LeaderUpdated events (events.go)
	stopped     atomic.Bool
	catchTarget atomic.Uint64
	removed     context.Context // done once the replica learns it was removed (removal.go)
	setRemoved  context.CancelFunc
	removeOnce  sync.Once
	leaving     atomic.Bool
	clusterID   atomic.Pointer[string] // once known (clusterid.go)
	applied     *applySignal           // fired after each apply (watch.go)
	badMetas    rowLog                 // member metadata rows already reported (meta.go)
	members     *memberFeed            // membership events (memberevents.go)

	// ctx is the node's lifetime: every goroutine of the node runs under
	// it, Stop cancels it and waits for them (wg; the batcher's own).
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// Start opens (or creates) the replica in cfg.DataDir and starts it; a
// joining node first asks a member to admit it (retrying until ctx ends).
// It returns once Dragonboat has started the replica; the node becomes
// Ready after its first successful ReadIndex. The steps, in order:
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg, err = prepare(cfg) // config.go
	if err != nil {
		return nil, err
	}
	n := newNode(cfg)
	defer func() {
		if err != nil {
			n.abort()
		}
	}()
	flags := startFlags(cfg)
	ident, err := n.loadIdentity(flags) // start.go: wiped when the plan says so
	if err != nil {
		return nil, err
	}
	if err := n.openHost(); err != nil { // raft.go
		return nil, err
	}
	plan, err := n.decide(ctx, ident, flags) // start.go, formation.go
	if err != nil {
		return nil, err
	}
	if err := n.adoptIdentity(plan); err != nil { // start.go
		return nil, err
	}
	if err := n.join(ctx, plan); err != nil { // start.go
		return nil, err
	}
	if err := n.startReplica(plan); err != nil { // raft.go
		return nil, err
	}
	n.startMetrics()
	n.startGoroutines()
	return n, nil
}

func newNode(cfg Config) *Node {
	n := &Node{cfg: cfg, log: cfg.Logger.With("component", "node"), applied: newApplySignal(),
		members: newMemberFeed(memberRingSize)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.removed, n.setRemoved = context.WithCancel(context.Background())
	n.batch.ctx = n.ctx
	n.events = &listener{n: n}
	if cfg.Peers != nil {
		// Created before the NodeHost: its event listener wakes it.
		n.ctrl = membership.NewController(n, cfg.Peers, cfg.Policy, cfg.DataDir, cfg.Logger)
	}
	return n
}

// abort undoes a Start that failed: nothing of the node runs afterwards.
func (n *Node) abort() {
	n.cancel()
	if n.nh != nil {
		n.nh.Close()
	}
}

func (n *Node) startMetrics() {
	n.metrics = newMetrics(n, n.cfg.Registry)
	n.batch.observe = func(k int) { n.metrics.batch.Observe(float64(k)) }
}

// startGoroutines starts the node's background work. Every long-lived
// goroutine of the node starts here, under n.ctx; Stop cancels it and
// waits for them. (The batcher's proposers run under n.ctx too, started
// per write; batch.stop waits for them.)
func (n *Node) startGoroutines() {
	n.goroutine(n.stayReady)       // catch-up, readiness watch, metadata publication
	n.goroutine(n.settleClusterID) // until the cluster ID is known (clusterid.go)
	n.goroutine(n.trackMembers)    // membership events (memberevents.go)
	if n.ctrl != nil {
		n.goroutine(n.ctrl.Run) // membership autopilot
	}
}

// goroutine runs f under the node's lifetime; Stop waits for it.
func (n *Node) goroutine(f func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f(n.ctx)
	}()
}

// Stop stops the node's goroutines, then the replica and the Raft host
// (NodeHost.Close waits for Dragonboat's and Pebble's). Idempotent.
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
