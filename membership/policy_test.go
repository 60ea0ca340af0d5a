package membership

import (
	"strings"
	"testing"
	"time"
)

func voter(id ReplicaID, applied uint64, down time.Duration) MemberState {
	return MemberState{ID: id, Role: RoleVoter, Applied: applied, Ready: down == 0, DownFor: down}
}

func observer(id ReplicaID, applied uint64, ready bool, down time.Duration) MemberState {
	return MemberState{ID: id, Role: RoleObserver, Applied: applied, Ready: ready, DownFor: down}
}

func view(ms ...MemberState) View { return View{LeaderID: 1, ConfigChangeID: 9, Members: ms} }

func TestDecidePromotion(t *testing.T) {
	p := Policy{Voters: 3, PromoteAfter: 2 * time.Second, DeadAfter: 30 * time.Second, MaxLag: 10}
	tests := []struct {
		name     string
		v        View
		self     ReplicaID
		caughtUp time.Duration
		want     Action
		reason   string
	}{
		{"not in view", view(voter(1, 100, 0)), 7, time.Minute, Wait, "not in the leader's view"},
		{"already voter", view(voter(1, 100, 0), voter(7, 100, 0)), 7, time.Minute, Wait, "voter"},
		{"not ready", view(voter(1, 100, 0), observer(7, 10, false, 0)), 7, time.Minute, Wait, "catching up"},
		{"one voter, seat free", view(voter(1, 100, 0), observer(7, 100, true, 0)), 7, 3 * time.Second, Promote, "1 of 3 voter seats"},
		{"dwell time not over", view(voter(1, 100, 0), observer(7, 100, true, 0)), 7, time.Second, Wait, "dwell time: caught up for 1s of 2s"},
		{"target reached", view(voter(1, 100, 0), voter(2, 100, 0), voter(3, 100, 0), observer(7, 100, true, 0)), 7, time.Minute, Wait, "voter target reached (3 of 3)"},
		{"unreachable voter still seated", view(voter(1, 100, 0), voter(2, 100, 0), voter(3, 90, 10*time.Second), observer(7, 100, true, 0)), 7, time.Minute, Wait, "voter target reached"},
		{"dead voter frees its seat", view(voter(1, 100, 0), voter(2, 100, 0), voter(3, 90, 31*time.Second), observer(7, 100, true, 0)), 7, time.Minute, Promote, "2 of 3"},
		{"lower ID observer goes first", view(voter(1, 100, 0), observer(5, 100, true, 0), observer(7, 100, true, 0)), 7, time.Minute, Wait, "observer 5 is ahead"},
		{"lower ID observer goes first (it is me)", view(voter(1, 100, 0), observer(5, 100, true, 0), observer(7, 100, true, 0)), 5, time.Minute, Promote, ""},
		{"lagging lower ID yields", view(voter(1, 500, 0), observer(5, 100, true, 0), observer(7, 500, true, 0)), 7, time.Minute, Promote, ""},
		{"unreachable lower ID yields", view(voter(1, 100, 0), observer(5, 100, true, time.Second), observer(7, 100, true, 0)), 7, time.Minute, Promote, ""},
		{"down in the leader's view", view(voter(1, 100, 0), observer(7, 100, true, time.Second)), 7, time.Minute, Wait, "the leader does not see this node live"},
		{"no quorum", view(voter(1, 100, 0), voter(2, 0, 40*time.Second), voter(3, 0, 40*time.Second), observer(7, 100, true, 0)), 7, time.Minute, Wait, "no quorum: 1 of 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecidePromotion(p, tt.v, tt.self, tt.caughtUp)
			if d.Action != tt.want || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("got %v %q, want %v containing %q", d.Action, d.Reason, tt.want, tt.reason)
			}
			if d.Action == Promote && d.Target != tt.self {
				t.Fatalf("promotes %d, want self %d", d.Target, tt.self)
			}
		})
	}
}

func TestDecideRemoval(t *testing.T) {
	p := Policy{Voters: 3, PromoteAfter: 2 * time.Second, DeadAfter: 30 * time.Second, MaxLag: 10}
	tests := []struct {
		name   string
		v      View
		want   Action
		target ReplicaID
		reason string
	}{
		{"all alive", view(voter(1, 1, 0), voter(2, 1, 0), voter(3, 1, 0)), Wait, 0, ""},
		{"dead but no replacement yet", view(voter(1, 1, 0), voter(2, 1, 0), voter(3, 1, time.Minute)), Wait, 0, "waiting for an observer"},
		{"unreachable, not dead yet", view(voter(1, 1, 0), voter(2, 1, 0), voter(3, 1, 0), voter(4, 1, 10*time.Second)), Wait, 0, ""},
		{"replacement promoted", view(voter(1, 1, 0), voter(2, 1, 0), voter(3, 1, time.Minute), voter(4, 1, 0)), Remove, 3, "down for 1m0s"},
		{"longest dead first", view(voter(1, 1, 0), voter(2, 1, 0), voter(3, 1, time.Minute), voter(4, 1, 2*time.Minute), voter(5, 1, 0), voter(6, 1, 0), voter(7, 1, 0)), Remove, 4, ""},
		{"no quorum to remove", view(voter(1, 1, 0), voter(2, 1, time.Minute), voter(3, 1, time.Minute), voter(4, 1, 0)), Wait, 0, "no quorum"},
		{"never the leader", View{LeaderID: 3, Members: []MemberState{voter(1, 1, 0), voter(2, 1, 0), voter(3, 1, time.Minute), voter(4, 1, 0)}}, Wait, 0, ""},
		{"dead observers are left alone", view(voter(1, 1, 0), voter(2, 1, 0), voter(3, 1, 0), observer(4, 1, false, time.Hour)), Wait, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecideRemoval(p, tt.v)
			if d.Action != tt.want || d.Target != tt.target || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("got %v %d %q, want %v %d containing %q", d.Action, d.Target, d.Reason, tt.want, tt.target, tt.reason)
			}
		})
	}
}

func live(m MemberState, liveFor time.Duration) MemberState { m.LiveFor = liveFor; return m }

func stable(v View, d time.Duration) View { v.Stable = d; return v }

// More voters hold a seat than the target: the leader retires one, and
// which one is deterministic (down, then back most recently, then least
// caught up, then highest ID), never the leader, never without a quorum,
// never while the membership is settling.
func TestDecideRemovalSurplus(t *testing.T) {
	p := Policy{Voters: 3, PromoteAfter: 2 * time.Second, DeadAfter: 30 * time.Second, MaxLag: 10}
	h := time.Hour
	tests := []struct {
		name   string
		v      View
		want   Action
		target ReplicaID
		reason string
	}{
		{"at the target", stable(view(live(voter(1, 9, 0), h), live(voter(2, 9, 0), h), live(voter(3, 9, 0), h)), h), Wait, 0, ""},
		{"the voter that came back", stable(view(live(voter(1, 9, 0), h), live(voter(2, 9, 0), h), live(voter(3, 9, 0), 5*time.Second), live(voter(4, 9, 0), h)), h),
			Remove, 3, "4 voters hold a seat, target 3: retiring surplus voter 3 (live for 5s, the shortest)"},
		{"a voter still down (not dead yet) goes first", stable(view(live(voter(1, 9, 0), h), live(voter(2, 9, 0), h), voter(3, 9, 10*time.Second), live(voter(4, 9, 0), 5*time.Second)), h),
			Remove, 3, "down for 10s"},
		{"then the least caught up", stable(view(live(voter(1, 9, 0), h), live(voter(2, 9, 0), h), live(voter(3, 7, 0), h), live(voter(4, 9, 0), h)), h),
			Remove, 3, "the least caught up, applied 7"},
		{"then the highest ID", stable(view(live(voter(1, 9, 0), h), live(voter(2, 9, 0), h), live(voter(3, 9, 0), h), live(voter(4, 9, 0), h)), h),
			Remove, 4, ""},
		{"never the leader", stable(View{LeaderID: 4, Members: []MemberState{live(voter(1, 9, 0), h), live(voter(2, 9, 0), h), live(voter(3, 9, 0), h), live(voter(4, 9, 0), time.Second)}}, h),
			Remove, 3, ""},
		{"membership still settling", stable(view(live(voter(1, 9, 0), h), live(voter(2, 9, 0), h), live(voter(3, 9, 0), time.Second), live(voter(4, 9, 0), h)), time.Second),
			Wait, 0, "changed 1s ago"},
		{"no quorum of live voters", stable(view(live(voter(1, 9, 0), h), voter(2, 9, 10*time.Second), voter(3, 9, 10*time.Second), live(voter(4, 9, 0), h), live(voter(5, 9, 0), h)), h),
			Remove, 3, ""},
		{"no quorum left after the removal", stable(View{LeaderID: 1, Members: []MemberState{live(voter(1, 9, 0), h), voter(2, 9, 10*time.Second), voter(3, 9, 10*time.Second), live(voter(4, 9, 0), h)}}, h),
			Wait, 0, "no quorum to retire voter"},
		{"dead voters are removed first", stable(view(live(voter(1, 9, 0), h), live(voter(2, 9, 0), h), voter(3, 9, time.Minute), live(voter(4, 9, 0), h), live(voter(5, 9, 0), time.Second)), h),
			Remove, 3, "down for 1m0s (dead after 30s)"},
		{"observers do not count", stable(view(live(voter(1, 9, 0), h), live(voter(2, 9, 0), h), live(voter(3, 9, 0), h), observer(4, 9, true, 0)), h), Wait, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecideRemoval(p, tt.v)
			if d.Action != tt.want || d.Target != tt.target || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("got %v %d %q, want %v %d containing %q", d.Action, d.Target, d.Reason, tt.want, tt.target, tt.reason)
			}
		})
	}
}

// A member whose API answers counts as live only while it follows the
// leader's log.
func TestFollowing(t *testing.T) {
	p := Policy{Voters: 3, DeadAfter: 30 * time.Second, MaxLag: 10}
	tests := []struct {
		name   string
		f      Follow
		want   bool
		reason string
	}{
		{"in step", Follow{Ready: true, Applied: 100, PrevApplied: 90, LeaderApplied: 100}, true, ""},
		{"idle cluster", Follow{Ready: true, Applied: 100, PrevApplied: 100, LeaderApplied: 100}, true, ""},
		{"within MaxLag, not moving", Follow{Ready: true, Applied: 95, PrevApplied: 95, LeaderApplied: 105}, true, ""},
		{"slow but moving", Follow{Ready: true, Applied: 500, PrevApplied: 400, LeaderApplied: 5000}, true, ""},
		{"leader unknown", Follow{Ready: true, Applied: 5, PrevApplied: 5}, true, ""},
		{"stuck behind (Raft cut, writes go on)", Follow{Ready: true, Applied: 400, PrevApplied: 400, LeaderApplied: 5000}, false, "4600 behind the leader's 5000 and not moving"},
		{"behind on its first probe", Follow{Ready: true, Applied: 400, LeaderApplied: 5000}, false, "not moving"},
		{"not ready (no leader: Raft cut, idle cluster)", Follow{Ready: false, Reason: "no leader for 3s", Applied: 100, PrevApplied: 100, LeaderApplied: 100}, false, "not ready: no leader for 3s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := p.Following(tt.f)
			if got != tt.want || !strings.Contains(reason, tt.reason) {
				t.Fatalf("got %v %q, want %v containing %q", got, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestCheckRemoval(t *testing.T) {
	tests := []struct {
		name string
		v    View
		id   ReplicaID
		err  error
	}{
		{"observer", view(voter(1, 1, 0), observer(7, 1, true, 0)), 7, nil},
		{"healthy voter of three", view(voter(1, 1, 0), voter(2, 1, 0), voter(3, 1, 0)), 3, nil},
		{"dead voter", view(voter(1, 1, 0), voter(2, 1, 0), voter(3, 1, time.Hour)), 3, nil},
		{"only voter", view(voter(1, 1, 0)), 1, ErrNoQuorum},
		{"would leave one of two", view(voter(1, 1, 0), voter(2, 1, time.Hour), voter(3, 1, 0)), 3, ErrNoQuorum},
		{"not a member", view(voter(1, 1, 0)), 9, ErrNotMember},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkRemoval(tt.v, tt.id)
			if (err == nil) != (tt.err == nil) || (err != nil && !errorsIs(err, tt.err)) {
				t.Fatalf("got %v, want %v", err, tt.err)
			}
		})
	}
}

// The guard over a node's Members rows: refused without a view, and it
// reads the rows as the policy's view (a row down for any time is not live).
func TestCheckRemovalOfRows(t *testing.T) {
	if err := CheckRemoval(nil, 0, false, 1); !errorsIs(err, ErrNoView) {
		t.Fatalf("no view: got %v, want ErrNoView", err)
	}
	rows := []MemberInfo{
		{ID: 1, Role: RoleVoter, Leader: true}, {ID: 2, Role: RoleVoter, DownFor: time.Millisecond},
		{ID: 3, Role: RoleVoter}, {ID: 4, Role: RoleObserver},
	}
	if err := CheckRemoval(rows, 5, true, 3); !errorsIs(err, ErrNoQuorum) {
		t.Fatalf("removing live voter 3 of 1, 2 (down), 3: got %v, want ErrNoQuorum", err)
	}
	for _, id := range []ReplicaID{2, 4} {
		if err := CheckRemoval(rows, 5, true, id); err != nil {
			t.Fatalf("removing member %d: %v", id, err)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, n := range []int{0, 2, 4, -1} {
		p := DefaultPolicy()
		p.Voters = n
		if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "must be odd") {
			t.Errorf("voters %d: %v", n, err)
		}
	}
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
}
