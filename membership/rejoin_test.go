package membership

import (
	"context"
	"errors"
	"strings"
	"testing"
)

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
