package membership

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/lni/dragonboat/v4"
)

// Controller is the membership autopilot of one node. Every node probes its
// peers and publishes its view (Members); an observer promotes itself from
// the leader's view; the leader removes dead voters once replaced. After
// every membership change that concerns this node it takes a local snapshot
// (so that the newest snapshot embeds its role) and rewrites the cache file.
type Controller struct {
	host    Host
	dialer  PeerDialer
	policy  Policy
	dataDir string
	log     *slog.Logger
	tracker *tracker
	wake    chan struct{}
	next    time.Duration // delay before the next step; Run's goroutine only
	now     func() time.Time

	mu             sync.Mutex
	notReady       time.Time // since when the node has not been ready
	reason         string
	reasonNotReady bool // reason was given while the node was not ready
	caughtUpSince  time.Time
	lastRole       Role
	lastLogged     string
	lastRemoval    string // the leader's last removal and its reason
}

// NewController; Run does the work.
func NewController(h Host, d PeerDialer, p Policy, dataDir string, log *slog.Logger) *Controller {
	c := &Controller{host: h, dialer: d, policy: p, dataDir: dataDir, log: log.With("component", "membership"), wake: make(chan struct{}, 1), now: time.Now}
	c.tracker = newTracker(h, d, p, c.Reason)
	return c
}

// Notify wakes the controller (a membership change or leader change event).
func (c *Controller) Notify() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Reason explains this node's membership state (why an observer is not
// promoted, for instance). ready is whether the node is ready now: the
// reason given while it was not ("catching up") is stale once it is, until
// the next step replaces it (a joiner's row said "ready: catching up").
func (c *Controller) Reason(ready bool) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ready && c.reasonNotReady {
		return ""
	}
	return c.reason
}

func (c *Controller) setReason(r string) {
	c.mu.Lock()
	c.reason, c.reasonNotReady = r, false
	c.mu.Unlock()
}

// logDecision logs a decision when its kind (action and the reason up to
// its first colon) differs from the previous one: "dwell time: 1.2s of 2s"
// is logged once, not on every tick.
func (c *Controller) logDecision(msg string, d Decision) {
	kind, _, _ := strings.Cut(d.Reason, ":")
	kind = fmt.Sprint(msg, d.Action, kind)
	c.mu.Lock()
	same := c.lastLogged == kind
	c.lastLogged = kind
	c.mu.Unlock()
	if !same {
		c.log.Info(msg, "action", d.Action.String(), "target", uint64(d.Target), "reason", d.Reason)
	}
}

// Members is this node's view of the cluster; ok is false until the first
// probe has succeeded.
func (c *Controller) Members() ([]MemberInfo, uint64, bool) { return c.tracker.members() }

// Removed lists the IDs removed from the cluster, as of the last probe.
func (c *Controller) Removed() []ReplicaID { return c.tracker.removed() }

// Run loops until ctx ends.
// It steps every stepInterval, on events, and sooner when a step asks to
// (an observer whose dwell time ends before the next tick).
func (c *Controller) Run(ctx context.Context) {
	t := time.NewTimer(stepInterval)
	defer t.Stop()
	for {
		c.next = stepInterval
		c.step(ctx)
		t.Reset(c.next)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.wake:
		}
	}
}

// stepInterval is how often the controller looks at the cluster unprompted;
// joinStepInterval while the leader sees a member joining.
const (
	stepInterval     = 500 * time.Millisecond
	joinStepInterval = 100 * time.Millisecond
)

func (c *Controller) step(ctx context.Context) {
	local := c.host.Local()
	if !local.Ready {
		c.mu.Lock()
		c.reason, c.reasonNotReady = cmp.Or(local.Reason, "catching up"), true
		if c.notReady.IsZero() {
			c.notReady = c.now()
		}
		stuck := c.now().Sub(c.notReady) > 3*time.Second
		c.mu.Unlock()
		if stuck {
			c.CheckRemoved(ctx)
		}
		return
	}
	c.mu.Lock()
	c.notReady = time.Time{}
	c.mu.Unlock()
	changed, err := c.tracker.probe(ctx, time.Second)
	if err != nil {
		c.log.Debug("probe", "err", err)
		return
	}
	local = c.host.Local()
	if local.Role != c.lastRole && local.Role != RoleUnknown {
		c.log.Info("role", "from", c.lastRole.String(), "to", local.Role.String())
		c.roleChanged(ctx)
		c.lastRole = local.Role
		changed = true
	}
	if changed {
		c.writeCache(ctx)
	}
	switch {
	case local.LeaderID == c.host.ID():
		if c.tracker.joining() {
			c.next = min(c.next, joinStepInterval)
		}
		c.reap(ctx)
	case local.Role == RoleObserver:
		c.promote(ctx, local)
	default:
		c.setReason("")
	}
}

// CheckRemoved asks the members it knows of whether this replica was
// removed (while it was away, or by its own Leave whose commit it never
// heard of): a removed replica learns nothing from Raft (the others no
// longer talk to it), so it would wait forever. It reports whether a
// member said so (the host is then marked removed).
func (c *Controller) CheckRemoved(ctx context.Context) bool {
	metas, err := c.host.Metas(ctx)
	if err != nil {
		return false
	}
	for id, m := range metas {
		if id == c.host.ID() || m.APIAddr == "" {
			continue
		}
		vctx, cancel := context.WithTimeout(ctx, time.Second)
		v, err := c.dialer.View(vctx, m.APIAddr)
		cancel()
		if err == nil && v.Removed[c.host.ID()] {
			c.log.Error("member reports this replica as removed from the cluster", "member", uint64(id))
			c.host.MarkRemoved()
			return true
		}
	}
	return false
}

// roleChanged takes a local snapshot so that the newest snapshot embeds the
// role (design.md §5.3): a restart then replays little.
func (c *Controller) roleChanged(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch err := c.host.Snapshot(sctx); {
	case err == nil, errors.Is(err, dragonboat.ErrRejected):
	case ctx.Err() != nil:
		return // stopping: the snapshot is not needed for that
	default:
		c.log.Warn("snapshot after role change", "err", err)
		return
	}
	c.log.Info("snapshot taken after role change")
	if c.lastRole == RoleObserver {
		CrashPoint(CrashAfterSnapshot)
	}
}

func (c *Controller) writeCache(ctx context.Context) {
	rows, ccid, ok := c.tracker.members()
	if !ok {
		return
	}
	m := Membership{ConfigChangeID: ccid, Voters: map[ReplicaID]string{}, Observers: map[ReplicaID]string{}}
	api := map[ReplicaID]string{}
	for _, r := range rows {
		if r.Role == RoleVoter {
			m.Voters[r.ID] = r.RaftAddr
		} else {
			m.Observers[r.ID] = r.RaftAddr
		}
		api[r.ID] = r.APIAddr
	}
	if err := WriteCache(c.dataDir, c.host.ID(), m, api); err != nil {
		c.log.Warn("write membership cache", "err", err)
	}
}

// promote: an observer asks the leader for its view and promotes itself
// when the policy says so.
func (c *Controller) promote(ctx context.Context, local Local) {
	v, ok := c.leaderView(ctx, local.LeaderID)
	if !ok {
		return
	}
	caughtUpFor, caughtUp := c.dwell(v.leaderApplied(), local.Applied)
	trustOwnCatchUp(&v, c.host.ID(), local)
	d := DecidePromotion(c.policy, v, c.host.ID(), caughtUpFor)
	if left := c.policy.PromoteAfter - caughtUpFor; d.Action == Wait && caughtUp && left > 0 {
		// Look again as the dwell time ends, not up to a tick later.
		c.next = min(c.next, max(left, 10*time.Millisecond))
	}
	c.setReason(d.Reason)
	c.logDecision("promotion decision", d)
	if d.Action == Promote {
		c.promoteSelf(ctx, v.ConfigChangeID, d.Reason)
	}
}

// leaderView asks the leader for its published view; when it cannot, the
// reason says why and ok is false.
func (c *Controller) leaderView(ctx context.Context, leader ReplicaID) (v View, ok bool) {
	metas, err := c.host.Metas(ctx)
	if err != nil || metas[leader].APIAddr == "" {
		c.setReason("waiting for the leader's API address")
		return View{}, false
	}
	vctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, err = c.dialer.View(vctx, metas[leader].APIAddr)
	if err != nil {
		c.setReason("cannot reach the leader: " + err.Error())
		return View{}, false
	}
	return v, true
}

// dwell keeps the dwell timer: how long this node has stayed within
// MaxLag of the leader's applied index without a break (caughtUp: it is
// now). A lag spike starts it again.
func (c *Controller) dwell(leaderApplied, applied uint64) (caughtUpFor time.Duration, caughtUp bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case leaderApplied > applied+c.policy.MaxLag:
		c.caughtUpSince = time.Time{}
		return 0, false
	case c.caughtUpSince.IsZero():
		c.caughtUpSince = now
	}
	return now.Sub(c.caughtUpSince), true
}

// trustOwnCatchUp rewrites self's row in the leader's view v: this node is
// the authority on its own catch-up (it proved it with a ReadIndex), while
// the leader's row comes from a probe up to a step old and would hold the
// promotion back by that much.
func trustOwnCatchUp(v *View, self ReplicaID, local Local) {
	if !local.Ready {
		return
	}
	for i := range v.Members {
		if m := &v.Members[i]; m.ID == self {
			m.Ready, m.DownFor = true, 0
			m.Applied = max(m.Applied, local.Applied)
		}
	}
}

// promoteSelf makes this observer a voter with the config-change ID of the
// view the decision read: a membership change since then makes Raft reject it.
func (c *Controller) promoteSelf(ctx context.Context, ccid uint64, reason string) {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	CrashPoint(CrashBeforePromote)
	err := c.host.AddVoter(pctx, c.host.ID(), c.host.RaftAddr(), ccid)
	switch {
	case err == nil:
		c.log.Info("promoted to voter", "config_change_id", ccid, "reason", reason)
		CrashPoint(CrashAfterPromote)
		c.Notify()
	case errors.Is(err, dragonboat.ErrRejected):
		c.log.Info("promotion rejected: another membership change won the race", "config_change_id", ccid)
	default:
		c.log.Warn("promotion failed", "err", err)
	}
}

// reap: the leader removes a dead voter once it has been replaced, and
// retires a surplus voter. Its reason (kvctl members, the leader's row)
// says what it waits for, or what it last removed and why.
func (c *Controller) reap(ctx context.Context) {
	rows, ccid, ok := c.tracker.members()
	if !ok {
		c.setReason("leader")
		return
	}
	v := ViewOf(rows, ccid)
	v.Stable = c.tracker.stable()
	d := DecideRemoval(c.policy, v)
	c.mu.Lock()
	last := c.lastRemoval
	c.mu.Unlock()
	switch {
	case d.Reason != "":
		c.setReason("leader: " + d.Reason)
		c.logDecision("removal decision", d)
	case last != "" && v.Stable < time.Minute:
		c.setReason(fmt.Sprintf("leader: %s (%s ago)", last, v.Stable.Truncate(time.Second)))
	default:
		c.setReason("leader")
	}
	if d.Action != Remove {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.host.RemoveReplica(rctx, d.Target, ccid); err != nil {
		c.log.Warn("remove voter", "replica", uint64(d.Target), "err", err, "reason", d.Reason)
		return
	}
	c.log.Info("removed voter", "replica", uint64(d.Target), "reason", d.Reason)
	c.mu.Lock()
	c.lastRemoval = fmt.Sprintf("removed voter %d: %s", d.Target, d.Reason)
	c.mu.Unlock()
	c.Notify()
}
