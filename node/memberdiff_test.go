package node

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvd-project/kvd/membership"
)

// row is a member in a test view: a voter, ready, unless opts say otherwise.
func row(id membership.ReplicaID, opts ...func(*membership.MemberInfo)) membership.MemberInfo {
	m := membership.MemberInfo{ID: id, Role: membership.RoleVoter, RaftAddr: fmt.Sprintf("h%d:7071", id),
		APIAddr: fmt.Sprintf("h%d:7070", id), State: membership.StateReady, Ready: true}
	for _, o := range opts {
		o(&m)
	}
	return m
}

func leads(m *membership.MemberInfo)    { m.Leader = true }
func observer(m *membership.MemberInfo) { m.Role = membership.RoleObserver }
func inState(s membership.State, reason string) func(*membership.MemberInfo) {
	return func(m *membership.MemberInfo) { m.State, m.Ready, m.Reason = s, s == membership.StateReady, reason }
}

func view(rows ...membership.MemberInfo) MemberView { return MemberView{Rows: rows} }

func TestDiffMembers(t *testing.T) {
	unreachable := inState(membership.StateUnreachable, "connection refused")
	catchingUp := inState(membership.StateCatchingUp, "")
	tests := []struct {
		name     string
		old, cur MemberView
		want     []string // "kind id reason-substring"
	}{
		{"nothing changed", view(row(1, leads), row(2)), view(row(1, leads), row(2)), nil},
		{"applied index and lag are not events",
			view(row(1, leads), row(2)), view(row(1, leads), row(2, func(m *membership.MemberInfo) { m.Applied, m.Lag = 9, 3 })), nil},
		{"a member joins", view(row(1, leads)), view(row(1, leads), row(5, observer, unreachable)),
			[]string{"joined 5 admitted as observer, raft h5:7071; unreachable: connection refused"}},
		{"a member joins and is ready at the first look", view(row(1, leads)), view(row(1, leads), row(5, observer)),
			[]string{"joined 5 admitted as observer, raft h5:7071; ready", "caught-up 5 ready when first seen"}},
		{"a joiner answers", view(row(1, leads), row(5, observer, unreachable)), view(row(1, leads), row(5, observer, catchingUp)),
			[]string{"reachable 5 its API answers; catching-up"}},
		{"a joiner catches up", view(row(1, leads), row(5, observer, catchingUp)), view(row(1, leads), row(5, observer)),
			[]string{"caught-up 5 was catching-up"}},
		{"a joiner without an API address yet catches up",
			view(row(5, observer, inState(membership.StateJoining, "has not published"))), view(row(5, observer)),
			[]string{"caught-up 5 was joining"}},
		{"an observer is promoted", view(row(1, leads), row(5, observer)), view(row(1, leads), row(5)),
			[]string{"promoted 5 observer → voter"}},
		{"promoted and caught up in one look", view(row(1, leads), row(5, observer, catchingUp)), view(row(1, leads), row(5)),
			[]string{"caught-up 5 was catching-up", "promoted 5 observer → voter"}},
		{"a voter stops answering", view(row(1, leads), row(2)), view(row(1, leads), row(2, unreachable)),
			[]string{"unreachable 2 connection refused"}},
		{"it answers again, ready: it caught up out of sight", view(row(1, leads), row(2, unreachable)), view(row(1, leads), row(2)),
			[]string{"reachable 2 its API answers; ready", "caught-up 2 was unreachable"}},
		{"a joiner never seen answering is ready and promoted in one look",
			view(row(1, leads), row(5, observer, unreachable)), view(row(1, leads), row(5)),
			[]string{"reachable 5 its API answers; ready", "caught-up 5 was unreachable", "promoted 5 observer → voter"}},
		{"it answers again, isolated", view(row(2, unreachable)), view(row(2, inState(membership.StateIsolated, "no leader"))),
			[]string{"reachable 2 its API answers; isolated: no leader"}},
		{"a restarted voter catches up", view(row(2, catchingUp)), view(row(2)), []string{"caught-up 2 was catching-up"}},
		{"a voter is isolated", view(row(1, leads), row(2)), view(row(1, leads), row(2, inState(membership.StateIsolated, "no leader for 3s"))),
			[]string{"not-ready 2 isolated: no leader for 3s"}},
		{"a stalled voter follows again", view(row(2, inState(membership.StateStalled, "applied 5 behind"))), view(row(2)),
			[]string{"ready 2 ready again (was stalled)"}},
		{"not ready to another not ready state is no event",
			view(row(2, inState(membership.StateStalled, ""))), view(row(2, inState(membership.StateIsolated, ""))), nil},
		{"a member is removed", MemberView{Rows: []membership.MemberInfo{row(1, leads), row(2)}},
			MemberView{Rows: []membership.MemberInfo{row(1, leads)}, Removed: []membership.ReplicaID{2}},
			[]string{"removed 2 never admitted again"}},
		{"a new leader", view(row(1, leads), row(2)), view(row(1), row(2, leads)), []string{"leader-changed 2 replaces 1"}},
		{"the leader is lost", view(row(1, leads), row(2)), view(row(1), row(2)), []string{"leader-changed 0 no leader known (was 1)"}},
		{"a leader is elected", view(row(1), row(2)), view(row(1, leads), row(2)), []string{"leader-changed 1 leader elected"}},
		{"the leader dies and another takes over", view(row(1, leads), row(2), row(3)), view(row(1, unreachable), row(2, leads), row(3)),
			[]string{"unreachable 1 connection refused", "leader-changed 2 replaces 1"}},
		{"members in ID order, then removals, then the leader",
			view(row(1, leads), row(2), row(3, observer)), view(row(1), row(3), row(4, observer, catchingUp)),
			[]string{"promoted 3 observer → voter", "joined 4 admitted as observer", "removed 2 no longer in the Raft membership",
				"leader-changed 0 no leader known"}},
	}
	now := time.Unix(1700000000, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := diffMembers(tt.old, tt.cur, now)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events %v, want %d: %v", len(got), got, len(tt.want), tt.want)
			}
			for i, e := range got {
				kind, rest, _ := strings.Cut(tt.want[i], " ")
				id, reason, _ := strings.Cut(rest, " ")
				if e.Kind.String() != kind || fmt.Sprint(e.ID) != id || !strings.Contains(e.Reason, reason) || !e.Time.Equal(now) {
					t.Errorf("event %d = %s %d %q at %v, want %q", i, e.Kind, e.ID, e.Reason, e.Time, tt.want[i])
				}
				if e.Kind != LeaderChanged || e.ID != 0 {
					if e.Member.ID != e.ID {
						t.Errorf("event %d: member row %d, want %d", i, e.Member.ID, e.ID)
					}
				}
			}
		})
	}
}

// Every kind has its name; an unknown one says so.
func TestMemberEventKindNames(t *testing.T) {
	for k := MemberJoined; k <= MemberNotReady; k++ {
		if memberEventNames[k] == "" {
			t.Errorf("kind %d has no name", k)
		}
	}
	if MemberEventKind(99).String() != "unknown" {
		t.Errorf("kind 99 = %q", MemberEventKind(99))
	}
}
