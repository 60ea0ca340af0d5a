package rpc

import (
	"strings"
	"testing"

	"github.com/kvd-project/kvd/node"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// The handler converts node's kinds to the API's by number: each must name
// the same kind ("caught-up" is MEMBER_EVENT_KIND_CAUGHT_UP), and every API
// kind must have its node kind.
func TestMemberEventKindsMatchTheAPI(t *testing.T) {
	for n, name := range kvdv1.MemberEventKind_name {
		if n == 0 {
			continue
		}
		got := node.MemberEventKind(n).String()
		want := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, "MEMBER_EVENT_KIND_"), "_", "-"))
		if got != want {
			t.Errorf("kind %d: node says %q, the API %s", n, got, name)
		}
	}
}
