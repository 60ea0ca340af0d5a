package node

import (
	"context"
	"time"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/statemachine"
)

// leaderWait bounds how long catch-up waits for a known leader before it
// sends a ReadIndex anyway (which then waits for its own timeout).
const leaderWait = time.Second

// firstReadTimeout bounds the first catch-up ReadIndex; each later attempt
// gets twice the last, up to ReadyTimeout. A joiner's first ReadIndex, sent
// as soon as the first heartbeat names the leader, went unanswered in every
// join measured (the same ReadIndex 100 ms later is answered in under 1 ms;
// Dragonboat drops it somewhere we cannot see): with ReadyTimeout alone every
// join lost 230 ms there. A ReadIndex travels at the network's speed, not
// Raft's ticks, so on a slow network the first attempts just time out and
// the longer ones succeed.
const firstReadTimeout = 50 * time.Millisecond

// catchUp loops ReadIndex until one succeeds: from then on the node's applied
// index has reached the leader's commit index as of that read, and the node
// serves serializable reads. It reports false when ctx ends or the replica
// was removed first.
func (n *Node) catchUp(ctx context.Context) bool {
	backoff := 20 * time.Millisecond
	timeout := min(firstReadTimeout, n.cfg.ReadyTimeout)
	for attempt := 1; ; attempt++ {
		// A ReadIndex sent before the replica knows a leader is dropped
		// unanswered; wait for the first heartbeat (LeaderUpdated) instead.
		n.awaitLeader(ctx, leaderWait, func(id membership.ReplicaID) bool { return id != 0 })
		rctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := n.nh.SyncRead(rctx, ShardID, statemachine.AppliedQuery{})
		cancel()
		timeout = min(2*timeout, n.cfg.ReadyTimeout)
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

// awaitLeader waits until ok holds for the leader this replica knows,
// woken by Dragonboat's LeaderUpdated events, for at most limit (so that
// it never depends on an event alone). It reports whether ok held.
func (n *Node) awaitLeader(ctx context.Context, limit time.Duration, ok func(leader membership.ReplicaID) bool) bool {
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		moved := n.leaderMoved.wait() // before the check: no event is missed
		if ok(n.leaderID()) {
			return true
		}
		select {
		case <-moved:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// refreshCatchUpTarget asks a seed (or the leader, once its address is
// known) for its applied index, to say how far behind this node is.
func (n *Node) refreshCatchUpTarget(ctx context.Context) {
	if n.cfg.Peers == nil {
		return
	}
	var addrs []string
	if metas, err := n.Metas(ctx); err == nil {
		if m, ok := metas[n.leaderID()]; ok && m.APIAddr != "" {
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
