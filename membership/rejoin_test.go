package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

var discard = slog.New(slog.DiscardHandler)

type viewDialer struct {
	PeerDialer
	views map[string]View // missing: the peer has no view (Unavailable)
}

func (d *viewDialer) View(_ context.Context, api string) (View, error) {
	v, ok := d.views[api]
	if !ok {
		return View{}, errors.New("unavailable: no view of the members yet")
	}
	return v, nil
}

// A peer says replica 2 ran before only when its view shows 2 with a
// published API address, or removed; nodes starting together for the first
// time (2 listed without metadata, or no view at all) never say so.
func TestRanBefore(t *testing.T) {
	first := View{Members: []MemberState{{ID: 1, Role: RoleVoter, APIAddr: "a1"}, {ID: 2, Role: RoleVoter}}}
	ran := View{Members: []MemberState{{ID: 1, Role: RoleVoter, APIAddr: "a1"}, {ID: 2, Role: RoleVoter, APIAddr: "a2"}}}
	removed := View{Members: []MemberState{{ID: 1, Role: RoleVoter, APIAddr: "a1"}}, Removed: map[ReplicaID]bool{2: true}}
	for _, tc := range []struct {
		name  string
		views map[string]View
		want  string
	}{
		{"no peer answers", nil, ""},
		{"first start", map[string]View{"a1": first, "a3": first}, ""},
		{"one peer has no view, the other saw 2 run", map[string]View{"a3": ran}, "has run (API address a2)"},
		{"removed", map[string]View{"a1": removed}, "as removed"},
	} {
		got := RanBefore(context.Background(), &viewDialer{views: tc.views}, []string{"a1", "a3"}, 2)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

type removeDialer struct {
	PeerDialer
	answers []error // one per call; the last one repeats
	calls   int
}

func (d *removeDialer) Remove(context.Context, string, ReplicaID) error {
	err := d.answers[min(d.calls, len(d.answers)-1)]
	d.calls++
	return err
}

// RemoveOld retries while a member refuses for now (the quorum guard: the
// reachable voters left would not be a quorum) and stops at once on a
// refusal for good (wrong join secret).
func TestRemoveOld(t *testing.T) {
	seeds := func() []string { return []string{"a1"} }
	noQuorum := errors.New("failed_precondition: " + ErrNoQuorum.Error())
	d := &removeDialer{answers: []error{noQuorum, noQuorum, nil}}
	if err := RemoveOld(context.Background(), d, seeds, 2, discard); err != nil || d.calls != 3 {
		t.Fatalf("err %v after %d calls; want success on the 3rd", err, d.calls)
	}
	d = &removeDialer{answers: []error{fmt.Errorf("%w: wrong or missing join secret", ErrJoinRefused)}}
	if err := RemoveOld(context.Background(), d, seeds, 2, discard); !errors.Is(err, ErrJoinRefused) || d.calls != 1 {
		t.Fatalf("err %v after %d calls; want the refusal at once", err, d.calls)
	}
}
