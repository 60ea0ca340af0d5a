package node

import (
	"context"
	"fmt"
	"time"

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

// Get reads one key.
func (n *Node) Get(ctx context.Context, q statemachine.GetQuery, mode ReadMode) (statemachine.GetResult, error) {
	vs, err := n.read(ctx, mode, q)
	if err != nil {
		return statemachine.GetResult{}, err
	}
	return vs[0].(statemachine.GetResult), nil
}

// Range reads a page of keys.
func (n *Node) Range(ctx context.Context, q statemachine.RangeQuery, mode ReadMode) (statemachine.RangeResult, error) {
	vs, err := n.read(ctx, mode, q)
	if err != nil {
		return statemachine.RangeResult{}, err
	}
	return vs[0].(statemachine.RangeResult), nil
}

// ReadAll reads several keys with one consistency check: for Linearizable,
// one ReadIndex round serves them all; for Serializable, they read local
// state.
func (n *Node) ReadAll(ctx context.Context, qs []statemachine.GetQuery, mode ReadMode) ([]statemachine.GetResult, error) {
	anys := make([]interface{}, len(qs))
	for i, q := range qs {
		anys[i] = q
	}
	vs, err := n.read(ctx, mode, anys...)
	if err != nil {
		return nil, err
	}
	out := make([]statemachine.GetResult, len(vs))
	for i, v := range vs {
		out[i] = v.(statemachine.GetResult)
	}
	return out, nil
}

// read runs state machine queries behind one consistency check (consistent)
// and reads them from local state, which then is recent enough.
func (n *Node) read(ctx context.Context, mode ReadMode, qs ...interface{}) ([]interface{}, error) {
	start := time.Now()
	if err := n.consistent(ctx, mode); err != nil {
		n.metrics.observeRead(start, mode, err)
		return nil, err
	}
	out := make([]interface{}, len(qs))
	for i, q := range qs {
		v, err := n.nh.StaleRead(ShardID, q)
		if err != nil {
			n.metrics.observeRead(start, mode, err)
			return nil, fmt.Errorf("read: %w", err)
		}
		out[i] = v
	}
	n.metrics.observeRead(start, mode, nil)
	return out, nil
}

// consistent returns once local state may serve a read of mode: for
// Serializable, the node must be ready (the one not-ready check); for
// Linearizable, one ReadIndex round completes, after which local state has
// applied at least the leader's commit index as of the read's start, which
// is what a linearizable read needs.
func (n *Node) consistent(ctx context.Context, mode ReadMode) error {
	if n.stopped.Load() {
		return ErrStopped
	}
	if mode == Serializable {
		if !n.ready.Load() {
			return n.notReady()
		}
		return nil
	}
	ctx, cancel := withDeadline(ctx, 5*time.Second)
	defer cancel()
	if _, err := n.nh.SyncRead(ctx, ShardID, statemachine.AppliedQuery{}); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	n.proved()
	return nil
}
