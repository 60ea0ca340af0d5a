package node

import (
	"testing"

	"github.com/lni/dragonboat/v4"
	"go.uber.org/goleak"

	"github.com/kvd-project/kvd/internal/freeport"
	"github.com/kvd-project/kvd/membership"
)

// The node's state, every case: removal first, then readiness, then why it
// was revoked; a replica with a role catches up, one without is starting.
func TestStateOf(t *testing.T) {
	isolated := &unready{state: membership.StateIsolated, reason: "no leader for 3s"}
	for _, tt := range []struct {
		name    string
		role    membership.Role
		ready   bool
		removed bool
		why     *unready
		want    membership.State
		reason  string
	}{
		{name: "no role yet", want: membership.StateStarting},
		{name: "voter not caught up", role: membership.RoleVoter, want: membership.StateCatchingUp},
		{name: "observer not caught up", role: membership.RoleObserver, want: membership.StateCatchingUp},
		{name: "ready", role: membership.RoleVoter, ready: true, want: membership.StateReady},
		{name: "isolated", role: membership.RoleVoter, why: isolated, want: membership.StateIsolated, reason: "no leader for 3s"},
		{name: "isolated without a role", why: isolated, want: membership.StateIsolated, reason: "no leader for 3s"},
		{name: "removed", role: membership.RoleVoter, removed: true, want: membership.StateRemoved, reason: removedReason},
		{name: "removed, then isolated by a late watch", removed: true, why: isolated, want: membership.StateRemoved, reason: removedReason},
	} {
		state, reason := stateOf(tt.role, tt.ready, tt.removed, tt.why)
		if state != tt.want || reason != tt.reason {
			t.Errorf("%s: %s %q, want %s %q", tt.name, state, reason, tt.want, tt.reason)
		}
	}
}

// Status and this node's own row of the members view (Local.State, which
// the membership tracker shows as given) are one fact: they agree, also
// before the replica has a role (its shard pending, or in neither set of
// its membership, as a joiner replaying its log), where Status said
// starting and the row catching-up. The node is one of three initial
// members whose peers never start: without a quorum its shard stays
// pending (Dragonboat applies no membership), and it never becomes ready.
func TestStatusAndOwnRowAgree(t *testing.T) {
	defer goleak.VerifyNone(t)
	cfg := testConfig(t)
	cfg.ReplicaID = 1
	cfg.InitialMembers = map[membership.ReplicaID]string{1: cfg.RaftAddr, 2: freeport.Addr(t), 3: freeport.Addr(t)}
	n, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	if _, ok := n.shardInfo(); ok {
		t.Fatal("the shard of a member without a quorum is not pending")
	}
	if st, own := n.Status().State, n.Local().State; st != membership.StateStarting || own != st {
		t.Errorf("shard pending: Status says %s, its own row %s; want both starting", st, own)
	}
	voters := map[uint64]string{1: cfg.RaftAddr, 2: "x", 3: "y"}
	for _, tt := range []struct {
		name string
		si   dragonboat.ShardInfo
		want membership.State
	}{
		{"in neither set of its membership", dragonboat.ShardInfo{Replicas: map[uint64]string{2: "x", 3: "y"}}, membership.StateStarting},
		{"voter, not caught up", dragonboat.ShardInfo{Replicas: voters}, membership.StateCatchingUp},
		{"observer, not caught up", dragonboat.ShardInfo{Replicas: voters, IsNonVoting: true}, membership.StateCatchingUp},
	} {
		if st, own := n.status(tt.si, true).State, n.local(tt.si, true).State; st != tt.want || own != tt.want {
			t.Errorf("%s: Status says %s, its own row %s; want both %s", tt.name, st, own, tt.want)
		}
	}
}
