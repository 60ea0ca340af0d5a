package membership

import (
	"context"
	"errors"
	"strings"
	"testing"
)

type fakeHost struct {
	Host    // methods the tracker does not call panic
	ms      Membership
	meta    map[ReplicaID]Meta
	applied uint64
}

func (h *fakeHost) ID() ReplicaID { return 1 }
func (h *fakeHost) Local() Local {
	return Local{Role: RoleVoter, LeaderID: 1, Ready: true, Applied: h.applied, State: StateReady}
}
func (h *fakeHost) Membership(context.Context) (Membership, error) { return h.ms, nil }
func (h *fakeHost) Metas(context.Context) (map[ReplicaID]Meta, error) {
	return h.meta, nil
}

type fakeDialer struct {
	PeerDialer
	answers map[string]PeerStatus
}

func (d *fakeDialer) Status(_ context.Context, api string) (PeerStatus, error) {
	return d.answers[api], nil
}

// A member's address that answers as another replica (a new container on a
// dead member's IP) does not make the member look alive.
func TestTrackerRejectsAnswerFromAnotherReplica(t *testing.T) {
	h := &fakeHost{
		ms:   Membership{Voters: map[ReplicaID]string{1: "r1", 2: "r2", 3: "r3"}},
		meta: map[ReplicaID]Meta{2: {APIAddr: "a2"}, 3: {APIAddr: "a3"}},
	}
	d := &fakeDialer{answers: map[string]PeerStatus{
		"a2": {ID: 9, Role: RoleObserver, Ready: true, Applied: 5}, // someone else now
		"a3": {ID: 3, Role: RoleVoter, Ready: true, Applied: 5},
	}}
	tr := newTracker(h, d, DefaultPolicy(), func(bool) string { return "" })
	if _, err := tr.probe(context.Background(), 1e9); err != nil {
		t.Fatal(err)
	}
	rows, _, ok := tr.members()
	if !ok {
		t.Fatal("no view after a probe")
	}
	for _, r := range rows {
		switch r.ID {
		case 2:
			if r.State != StateUnreachable || r.DownFor == 0 || r.Ready || !strings.Contains(r.Reason, "answers as replica 9") {
				t.Fatalf("member 2 = %+v; want unreachable", r)
			}
		case 3:
			if r.DownFor != 0 || !r.Ready {
				t.Fatalf("member 3 = %+v; want reachable and ready", r)
			}
		}
	}
}

// A member whose API answers but whose Raft does not follow (cut off on its
// Raft port: its applied index stands still while the leader's moves on, or
// it reports that it is not ready) goes down like one that does not answer;
// a member of an idle cluster, or a slow one that moves, stays live.
func TestTrackerJudgesRaftProgress(t *testing.T) {
	h := &fakeHost{
		ms:   Membership{Voters: map[ReplicaID]string{1: "r1", 2: "r2", 3: "r3", 4: "r4"}},
		meta: map[ReplicaID]Meta{2: {APIAddr: "a2"}, 3: {APIAddr: "a3"}, 4: {APIAddr: "a4"}},
	}
	d := &fakeDialer{answers: map[string]PeerStatus{}}
	p := DefaultPolicy()
	tr := newTracker(h, d, p, func(bool) string { return "" })
	probe := func(leader, stuck, slow, isolated uint64, isolatedReady bool) map[ReplicaID]MemberInfo {
		t.Helper()
		h.applied = leader
		d.answers["a2"] = PeerStatus{ID: 2, Role: RoleVoter, Ready: true, Applied: stuck}
		d.answers["a3"] = PeerStatus{ID: 3, Role: RoleVoter, Ready: true, Applied: slow}
		d.answers["a4"] = PeerStatus{ID: 4, Role: RoleVoter, Ready: isolatedReady, Applied: isolated, State: StateIsolated, Reason: "no leader for 3s"}
		if _, err := tr.probe(context.Background(), 1e9); err != nil {
			t.Fatal(err)
		}
		rows, _, _ := tr.members()
		out := map[ReplicaID]MemberInfo{}
		for _, r := range rows {
			out[r.ID] = r
		}
		return out
	}
	// Idle: everyone at 100, all live.
	rows := probe(100, 100, 100, 100, true)
	for id := ReplicaID(2); id <= 4; id++ {
		if rows[id].DownFor != 0 || rows[id].LiveFor == 0 {
			t.Fatalf("idle cluster: member %d = %+v; want live", id, rows[id])
		}
	}
	rows = probe(100, 100, 100, 100, true) // still idle: still live
	if rows[2].DownFor != 0 {
		t.Fatalf("idle cluster, second probe: member 2 = %+v; want live", rows[2])
	}
	// Writes go on: 2 stands still, 3 moves slowly, 4 says it is not ready.
	rows = probe(5000, 100, 400, 100, false)
	if r := rows[2]; r.DownFor == 0 || r.State != StateStalled || !strings.Contains(r.Reason, "not moving") {
		t.Fatalf("stuck member 2 = %+v; want down, stalled", r)
	}
	if r := rows[3]; r.DownFor != 0 {
		t.Fatalf("slow but moving member 3 = %+v; want live", r)
	}
	if rows[1].Lag != 0 || rows[2].Lag != 4900 || rows[3].Lag != 4600 {
		t.Fatalf("lags %d, %d, %d; want 0, 4900, 4600 behind the leader's 5000", rows[1].Lag, rows[2].Lag, rows[3].Lag)
	}
	if r := rows[4]; r.DownFor == 0 || r.State != StateIsolated || !strings.Contains(r.Reason, "no leader for 3s") {
		t.Fatalf("not-ready member 4 = %+v; want down with its reason", r)
	}
	probe(9000, 100, 900, 100, false)
	all, ccid, _ := tr.members()
	for _, m := range ViewOf(all, ccid).Members {
		if (m.ID == 2 || m.ID == 4) && m.DownFor == 0 {
			t.Fatalf("view: member %d = %+v; want down", m.ID, m)
		}
	}
}

// States and actions go to the API and the logs by name: the names are
// pinned, and a name read back is the same state.
func TestStateAndActionNames(t *testing.T) {
	want := map[State]string{
		StateUnknown: "unknown", StateStarting: "starting", StateCatchingUp: "catching-up", StateReady: "ready",
		StateIsolated: "isolated", StateRemoved: "removed", StateStopped: "stopped",
		StateStalled: "stalled", StateJoining: "joining", StateUnreachable: "unreachable",
	}
	for s := StateUnknown; s <= StateUnreachable+1; s++ {
		name, ok := want[s]
		if !ok {
			name = "unknown"
		}
		if s.String() != name {
			t.Errorf("State(%d).String() = %q, want %q", int(s), s, name)
		}
		if ok && ParseState(name) != s {
			t.Errorf("ParseState(%q) = %v, want %v", name, ParseState(name), s)
		}
	}
	if got := ParseState("draining"); got != StateUnknown {
		t.Errorf("ParseState of a state this version does not know = %v, want unknown", got)
	}
	for a, name := range map[Action]string{Wait: "wait", Promote: "promote", Remove: "remove", Remove + 1: "unknown"} {
		if a.String() != name {
			t.Errorf("Action(%d).String() = %q, want %q", int(a), a, name)
		}
	}
}

// This node's row shows the state the node gives in Local as it is (the
// node decides it once, for its Status too): also starting, before the
// replica has a role, where the row said catching-up while Status said
// starting.
func TestTrackerSelfState(t *testing.T) {
	for _, tt := range []struct {
		local Local
		want  State
	}{
		{Local{State: StateStarting}, StateStarting},
		{Local{Role: RoleObserver, LeaderID: 2, State: StateCatchingUp}, StateCatchingUp},
		{Local{Role: RoleVoter, LeaderID: 1, Ready: true, State: StateReady}, StateReady},
		{Local{Role: RoleVoter, State: StateIsolated, Reason: "no leader for 3s"}, StateIsolated},
		{Local{Role: RoleVoter, State: StateRemoved}, StateRemoved},
	} {
		h := &selfHost{fakeHost: fakeHost{ms: Membership{Voters: map[ReplicaID]string{1: "r1"}}}, local: tt.local}
		tr := newTracker(h, &fakeDialer{}, DefaultPolicy(), func(bool) string { return "" })
		if _, err := tr.probe(context.Background(), 1e9); err != nil {
			t.Fatal(err)
		}
		rows, _, _ := tr.members()
		if len(rows) != 1 || rows[0].State != tt.want {
			t.Errorf("local %+v: rows %+v; want one row, %v", tt.local, rows, tt.want)
		}
	}
}

type selfHost struct {
	fakeHost
	local Local
}

func (h *selfHost) Local() Local { return h.local }

// The leader's applied index: this node's own when it leads, the leader's
// answer otherwise, unknown when the leader did not answer.
func TestLeaderAppliedOf(t *testing.T) {
	answers := []answer{{id: 2, st: PeerStatus{ID: 2, Applied: 70}}, {id: 3, err: errors.New("refused")}}
	for _, tt := range []struct {
		leader ReplicaID
		want   uint64
	}{{1, 50}, {2, 70}, {3, 0}, {0, 0}} {
		if got := leaderAppliedOf(1, Local{LeaderID: tt.leader, Applied: 50}, answers); got != tt.want {
			t.Errorf("leader %d: %d, want %d", tt.leader, got, tt.want)
		}
	}
}

// The leader sees a join under way while an observer has no API address
// yet or answers but is not ready; not once it is ready, and never for a
// voter (3 here, which has no API address and does not answer).
func TestTrackerJoining(t *testing.T) {
	h := &fakeHost{
		ms:   Membership{Voters: map[ReplicaID]string{1: "r1", 2: "r2", 3: "r3"}, Observers: map[ReplicaID]string{4: "r4"}},
		meta: map[ReplicaID]Meta{2: {APIAddr: "a2"}},
	}
	d := &fakeDialer{answers: map[string]PeerStatus{
		"a2": {ID: 2, Role: RoleVoter, Ready: false, Applied: 5},
		"a4": {ID: 4, Role: RoleObserver, Ready: false, Applied: 0},
	}}
	tr := newTracker(h, d, DefaultPolicy(), func(bool) string { return "" })
	if tr.joining() {
		t.Fatal("joining before any probe")
	}
	for _, step := range []struct {
		what  string
		setup func()
		want  bool
	}{
		{"observer without an API address", func() {}, true},
		{"observer catching up", func() { h.meta[4] = Meta{APIAddr: "a4"} }, true},
		{"observer ready", func() { d.answers["a4"] = PeerStatus{ID: 4, Role: RoleObserver, Ready: true, Applied: 5} }, false},
	} {
		step.setup()
		if _, err := tr.probe(context.Background(), 1e9); err != nil {
			t.Fatal(err)
		}
		if got := tr.joining(); got != step.want {
			t.Fatalf("%s: joining() = %v, want %v", step.what, got, step.want)
		}
	}
}
