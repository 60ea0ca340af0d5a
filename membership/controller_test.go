package membership

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// ctlHost is the local replica as the controller sees it: replica 4, whose
// Local view the test sets, recording the changes asked of it.
type ctlHost struct {
	Host    // methods the controller must not call here panic
	local   Local
	metas   map[ReplicaID]Meta
	voters  []uint64 // config-change IDs of the AddVoter calls for itself
	removed bool     // MarkRemoved was called
}

func (h *ctlHost) ID() ReplicaID    { return 4 }
func (h *ctlHost) RaftAddr() string { return "r4" }
func (h *ctlHost) Local() Local     { return h.local }
func (h *ctlHost) Metas(context.Context) (map[ReplicaID]Meta, error) {
	return h.metas, nil
}
func (h *ctlHost) Membership(context.Context) (Membership, error) {
	return Membership{}, errors.New("no membership in this test")
}
func (h *ctlHost) AddVoter(_ context.Context, id ReplicaID, addr string, ccid uint64) error {
	if id != 4 || addr != "r4" {
		panic("AddVoter for another replica than this one")
	}
	h.voters = append(h.voters, ccid)
	return nil
}
func (h *ctlHost) MarkRemoved() { h.removed = true }
func (h *ctlHost) Snapshot(ctx context.Context) error {
	if ctx.Err() != nil {
		return errors.New("request canceled") // as Dragonboat says it
	}
	return errors.New("disk full")
}

// ctlDialer answers View with a published view per API address.
type ctlDialer struct {
	PeerDialer
	views map[string]View
	asked []string
}

func (d *ctlDialer) View(_ context.Context, api string) (View, error) {
	d.asked = append(d.asked, api)
	v, ok := d.views[api]
	if !ok {
		return View{}, errors.New("connection refused")
	}
	return v, nil
}

// testController is a controller over h and d whose clock the test moves.
func testController(t *testing.T, h *ctlHost, d *ctlDialer, p Policy) (*Controller, *time.Time) {
	t.Helper()
	clock := time.Unix(1e9, 0)
	c := NewController(h, d, p, t.TempDir(), slog.New(slog.NewTextHandler(t.Output(), nil)))
	c.now = func() time.Time { return clock }
	return c, &clock
}

// leaderView is the leader's (1) published view: voters 1 and 2, observer
// 4 (this node) as given, config change 7.
func leaderView(leaderApplied uint64, self MemberState, more ...MemberState) View {
	self.ID, self.Role = 4, RoleObserver
	return View{LeaderID: 1, ConfigChangeID: 7, Members: append([]MemberState{
		{ID: 1, Role: RoleVoter, Applied: leaderApplied, Ready: true},
		{ID: 2, Role: RoleVoter, Applied: leaderApplied, Ready: true},
		self,
	}, more...)}
}

func leaderMetas() map[ReplicaID]Meta {
	return map[ReplicaID]Meta{1: {APIAddr: "a1"}, 2: {APIAddr: "a2"}, 4: {APIAddr: "a4"}}
}

// An observer promotes itself only once its lag has stayed within MaxLag
// for PromoteAfter; a lag spike starts the dwell time again, and the step
// after a look is scheduled for the moment the dwell time ends.
func TestControllerDwellTime(t *testing.T) {
	p := Policy{Voters: 3, PromoteAfter: 2 * time.Second, DeadAfter: 30 * time.Second, MaxLag: 64}
	h := &ctlHost{metas: leaderMetas()}
	d := &ctlDialer{views: map[string]View{}}
	c, clock := testController(t, h, d, p)
	look := func(at time.Duration, applied, leaderApplied uint64) {
		t.Helper()
		*clock = time.Unix(1e9, 0).Add(at)
		h.local = Local{Role: RoleObserver, LeaderID: 1, Applied: applied, Ready: true}
		d.views["a1"] = leaderView(leaderApplied, MemberState{Applied: applied, Ready: true})
		c.next = stepInterval
		c.promote(context.Background(), h.local)
	}
	waits := func(when string) {
		t.Helper()
		if len(h.voters) != 0 {
			t.Fatalf("%s: promoted (config change %v); want it to wait, reason %q", when, h.voters, c.Reason(true))
		}
		if !strings.HasPrefix(c.Reason(true), "dwell time") {
			t.Fatalf("%s: reason %q; want the dwell time", when, c.Reason(true))
		}
	}

	look(0, 1000, 1000)
	waits("caught up now")
	look(1500*time.Millisecond, 1000, 1064) // MaxLag behind: still caught up
	waits("caught up for 1.5s")
	look(1800*time.Millisecond, 1064, 1064)
	waits("caught up for 1.8s")
	if c.next != 200*time.Millisecond {
		t.Fatalf("next step in %s; want 200ms, when the dwell time ends", c.next)
	}
	look(1900*time.Millisecond, 1064, 1129) // 65 behind: a spike
	waits("lag spike")
	look(2500*time.Millisecond, 1129, 1129)
	waits("caught up again after the spike, 2.5s after the first look")
	look(4400*time.Millisecond, 1129, 1129)
	waits("caught up for 1.9s since the spike")
	look(4500*time.Millisecond, 1129, 1129)
	if len(h.voters) != 1 || h.voters[0] != 7 {
		t.Fatalf("caught up for 2s: AddVoter calls %v; want one with the leader's config change 7 (reason %q)", h.voters, c.Reason(true))
	}
}

// The leader's row for this node comes from a probe up to a step old; this
// node proved its catch-up with its own ReadIndex, so it reads its own row
// as ready, live and as far as it applied — and only its own.
func TestControllerTrustsItsOwnCatchUp(t *testing.T) {
	p := Policy{Voters: 3, DeadAfter: 30 * time.Second, MaxLag: 64} // no dwell time
	for _, tt := range []struct {
		name string
		self MemberState   // this node's row in the leader's view
		more []MemberState // other observers
	}{
		{name: "leader saw it not ready", self: MemberState{Applied: 1000}},
		{name: "leader saw it down", self: MemberState{Applied: 1000, Ready: true, DownFor: 700 * time.Millisecond}},
		{name: "leader saw it behind another observer", self: MemberState{Applied: 10, Ready: true},
			more: []MemberState{{ID: 5, Role: RoleObserver, Applied: 1000, Ready: true}}},
		{name: "another observer's stale row is not rewritten", self: MemberState{Applied: 1000, Ready: true},
			more: []MemberState{{ID: 3, Role: RoleObserver, Applied: 1000}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := &ctlHost{metas: leaderMetas(), local: Local{Role: RoleObserver, LeaderID: 1, Applied: 1000, Ready: true}}
			d := &ctlDialer{views: map[string]View{"a1": leaderView(1000, tt.self, tt.more...)}}
			c, _ := testController(t, h, d, p)
			c.promote(context.Background(), h.local)
			if len(h.voters) != 1 {
				t.Fatalf("not promoted: %q", c.Reason(true))
			}
		})
	}
}

// Without the leader's API address, or when the leader does not answer,
// the observer waits and says why.
func TestControllerPromoteWithoutLeader(t *testing.T) {
	h := &ctlHost{metas: map[ReplicaID]Meta{2: {APIAddr: "a2"}}, local: Local{Role: RoleObserver, LeaderID: 1, Applied: 9, Ready: true}}
	d := &ctlDialer{views: map[string]View{}}
	c, _ := testController(t, h, d, DefaultPolicy())
	c.promote(context.Background(), h.local)
	if len(d.asked) != 0 || c.Reason(true) != "waiting for the leader's API address" {
		t.Fatalf("asked %v, reason %q; want to wait for the leader's API address", d.asked, c.Reason(true))
	}
	h.metas[1] = Meta{APIAddr: "a1"}
	c.promote(context.Background(), h.local)
	if len(h.voters) != 0 || !strings.HasPrefix(c.Reason(true), "cannot reach the leader: ") {
		t.Fatalf("promoted %v, reason %q; want it to wait for the leader", h.voters, c.Reason(true))
	}
}

// A node that stays not ready for more than 3 s asks the members it knows
// whether it was removed while it was away (Raft never tells it), and
// stops when one says so; one that became ready in between starts again.
func TestControllerChecksRemovalWhenStuck(t *testing.T) {
	h := &ctlHost{metas: map[ReplicaID]Meta{1: {APIAddr: "a1"}, 2: {APIAddr: "a2"}, 3: {}, 4: {APIAddr: "a4"}}}
	d := &ctlDialer{views: map[string]View{"a2": {Removed: map[ReplicaID]bool{4: true}}}} // a1 does not answer
	c, clock := testController(t, h, d, DefaultPolicy())
	stepAt := func(at time.Duration, ready bool) {
		t.Helper()
		*clock = time.Unix(1e9, 0).Add(at)
		h.local = Local{Role: RoleObserver, Ready: ready}
		c.step(context.Background())
	}

	stepAt(0, false)
	stepAt(2*time.Second, false)
	stepAt(2500*time.Millisecond, true) // ready again: the 3 s start over
	stepAt(3*time.Second, false)
	stepAt(6*time.Second, false)
	if len(d.asked) != 0 || h.removed {
		t.Fatalf("not ready for 3s at most: asked %v, removed %v; want no removal check yet", d.asked, h.removed)
	}
	if c.Reason(false) != "catching up" {
		t.Fatalf("reason %q; want catching up", c.Reason(false))
	}
	if r := c.Reason(true); r != "" {
		t.Fatalf("reason %q once the node is ready, before the next step; want none (\"catching up\" is stale then)", r)
	}
	stepAt(6100*time.Millisecond, false)
	if !h.removed {
		t.Fatalf("not ready for 3.1s, member 2 says it was removed: not marked removed (asked %v)", d.asked)
	}
	for _, api := range d.asked {
		if api == "a4" || api == "" {
			t.Fatalf("asked %v: itself or a member without an API address", d.asked)
		}
	}
}

// A stuck node that no member reports as removed keeps waiting, and keeps
// asking at every step; its reason is the node's own.
func TestControllerStuckButNotRemoved(t *testing.T) {
	h := &ctlHost{metas: leaderMetas(), local: Local{Role: RoleVoter, State: StateIsolated, Reason: "no leader for 3s"}}
	d := &ctlDialer{views: map[string]View{"a1": {}, "a2": {Removed: map[ReplicaID]bool{9: true}}}}
	c, clock := testController(t, h, d, DefaultPolicy())
	for i := range 6 {
		*clock = time.Unix(1e9, 0).Add(time.Duration(i) * time.Second)
		c.step(context.Background())
	}
	if h.removed {
		t.Fatal("marked removed, but no member says so")
	}
	if len(d.asked) != 4 { // a1 and a2 at 4 s and 5 s
		t.Fatalf("asked %v; want a1 and a2 at each of the two steps past 3 s", d.asked)
	}
	if c.Reason(false) != "no leader for 3s" {
		t.Fatalf("reason %q; want the node's own", c.Reason(false))
	}
}

// levels records the level of every log record.
type levels struct{ got []slog.Level }

func (l *levels) Enabled(context.Context, slog.Level) bool { return true }
func (l *levels) Handle(_ context.Context, r slog.Record) error {
	l.got = append(l.got, r.Level)
	return nil
}
func (l *levels) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levels) WithGroup(string) slog.Handler      { return l }

// A snapshot after a role change that fails is a warning, unless the node
// is stopping (its context ended): then it is not needed and says nothing.
func TestControllerSnapshotAfterRoleChange(t *testing.T) {
	rec := &levels{}
	c := NewController(&ctlHost{}, &ctlDialer{}, DefaultPolicy(), t.TempDir(), slog.New(rec))
	c.roleChanged(context.Background())
	if len(rec.got) != 1 || rec.got[0] != slog.LevelWarn {
		t.Fatalf("failed snapshot: logged at %v; want one warning", rec.got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec.got = nil
	c.roleChanged(ctx)
	if len(rec.got) != 0 {
		t.Fatalf("snapshot cut by stopping: logged at %v; want nothing", rec.got)
	}
}
