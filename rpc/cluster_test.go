package rpc

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/node"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// fakeView is a node as the Cluster handlers see it: its status, its view
// of the members (rows; ok false = none yet) and its Raft membership.
type fakeView struct {
	membership.Host // calls the handlers must not make panic
	status          node.Status
	rows            []membership.MemberInfo
	ok              bool
	ms              membership.Membership
	removed         []membership.ReplicaID // RemoveReplica calls
}

func (v *fakeView) Status() node.Status { return v.status }
func (v *fakeView) Members() ([]membership.MemberInfo, uint64, bool) {
	return v.rows, v.ms.ConfigChangeID, v.ok
}
func (v *fakeView) RemovedIDs() []membership.ReplicaID { return nil }
func (v *fakeView) TransferLeader(membership.ReplicaID) error {
	panic("TransferLeader")
}
func (v *fakeView) Membership(context.Context) (membership.Membership, error) { return v.ms, nil }
func (v *fakeView) RemoveReplica(_ context.Context, id membership.ReplicaID, _ uint64) error {
	v.removed = append(v.removed, id)
	return nil
}

// Voters 1..3 live, observer 4; voter 3 is down in the view.
func threeVotersView() *fakeView {
	return &fakeView{
		status: node.Status{ReplicaID: 1, Voters: 3, Observers: 1, State: membership.StateReady},
		rows: []membership.MemberInfo{
			{ID: 1, Role: membership.RoleVoter, Leader: true}, {ID: 2, Role: membership.RoleVoter},
			{ID: 3, Role: membership.RoleVoter, DownFor: 1}, {ID: 4, Role: membership.RoleObserver},
		},
		ok: true,
		ms: membership.Membership{ConfigChangeID: 8, Voters: map[membership.ReplicaID]string{1: "r1", 2: "r2", 3: "r3"},
			Observers: map[membership.ReplicaID]string{4: "r4"}},
	}
}

// Status gives the node's own counts of voters and observers (node.Status
// computes them once), not counted again from the view here.
func TestStatusCountsVotersOnce(t *testing.T) {
	v := threeVotersView()
	v.status.Voters, v.status.Observers = 2, 0 // the node's; the view says 3 and 1
	resp, err := NewClusterServer(v, "test").Status(context.Background(), connect.NewRequest(&kvdv1.StatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Msg.Voters != 2 || resp.Msg.Observers != 0 {
		t.Fatalf("voters %d, observers %d; want the node's 2 and 0", resp.Msg.Voters, resp.Msg.Observers)
	}
}

// Remove applies membership.CheckRemoval: Unavailable without a view,
// refused when the live voters left would not be a quorum.
func TestRemoveGuard(t *testing.T) {
	remove := func(v *fakeView, id uint64) error {
		_, err := NewClusterServer(v, "test").Remove(context.Background(), connect.NewRequest(&kvdv1.RemoveRequest{Id: id}))
		return err
	}
	v := threeVotersView()
	v.ok = false
	if err := remove(v, 3); connect.CodeOf(err) != connect.CodeUnavailable || len(v.removed) != 0 {
		t.Fatalf("no view: %v, removed %v; want Unavailable and nothing removed", err, v.removed)
	}
	v = threeVotersView()
	if err := remove(v, 2); connect.CodeOf(err) != connect.CodeFailedPrecondition || len(v.removed) != 0 {
		t.Fatalf("live voter 2 with voter 3 down: %v, removed %v; want FailedPrecondition", err, v.removed)
	}
	if err := remove(v, 3); err != nil || len(v.removed) != 1 || v.removed[0] != 3 {
		t.Fatalf("down voter 3: %v, removed %v; want it removed", err, v.removed)
	}
	if err := remove(v, 9); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("not a member: %v; want NotFound", err)
	}
}

// Members without a view is Unavailable and says what the node is doing.
func TestMembersWithoutView(t *testing.T) {
	v := threeVotersView()
	v.ok, v.status.State = false, membership.StateCatchingUp
	_, err := NewClusterServer(v, "test").Members(context.Background(), connect.NewRequest(&kvdv1.MembersRequest{}))
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "catching-up") {
		t.Fatalf("%v; want Unavailable naming the node's state", err)
	}
}
