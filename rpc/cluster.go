package rpc

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/node"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// ClusterView is what the Cluster handlers need from a node.
type ClusterView interface {
	membership.Host
	Status() node.Status
	Members() ([]membership.MemberInfo, uint64, bool)
	RemovedIDs() []membership.ReplicaID
	TransferLeader(target membership.ReplicaID) error
}

type clusterServer struct {
	view    ClusterView
	version string
}

// NewClusterServer returns the kvd.v1.Cluster handler implementation.
func NewClusterServer(view ClusterView, version string) kvdv1connect.ClusterHandler {
	return &clusterServer{view: view, version: version}
}

func roleProto(r membership.Role) kvdv1.Role {
	switch r {
	case membership.RoleVoter:
		return kvdv1.Role_ROLE_VOTER
	case membership.RoleObserver:
		return kvdv1.Role_ROLE_OBSERVER
	}
	return kvdv1.Role_ROLE_UNSPECIFIED
}

func roleFromProto(r kvdv1.Role) membership.Role {
	switch r {
	case kvdv1.Role_ROLE_VOTER:
		return membership.RoleVoter
	case kvdv1.Role_ROLE_OBSERVER:
		return membership.RoleObserver
	}
	return membership.RoleUnknown
}

func (s *clusterServer) Status(ctx context.Context, _ *connect.Request[kvdv1.StatusRequest]) (*connect.Response[kvdv1.StatusResponse], error) {
	st := s.view.Status()
	resp := &kvdv1.StatusResponse{
		Id: uint64(st.ReplicaID), Role: roleProto(st.Role), LeaderId: uint64(st.LeaderID), Term: st.Term,
		AppliedIndex: st.Applied, Ready: st.Ready, RaftAddr: st.RaftAddr, ApiAddr: st.APIAddr,
		State: st.State.String(), Version: s.version, Voters: uint64(st.Voters), Observers: uint64(st.Observers),
		Reason: st.Reason, CatchUpTarget: st.CatchUpTarget,
	}
	return connect.NewResponse(resp), nil
}

// Members is this node's view: the Raft membership (the authority on roles),
// the replicated metadata and each member's status as last probed (at most
// about a second old). Only the leader's view drives the autopilot.
func (s *clusterServer) Members(ctx context.Context, _ *connect.Request[kvdv1.MembersRequest]) (*connect.Response[kvdv1.MembersResponse], error) {
	rows, ccid, ok := s.view.Members()
	if !ok {
		return nil, toConnect(fmt.Errorf("%w (it is %s)", membership.ErrNoView, s.view.Status().State))
	}
	out := &kvdv1.MembersResponse{ConfigChangeId: ccid}
	for _, id := range s.view.RemovedIDs() {
		out.RemovedIds = append(out.RemovedIds, uint64(id))
	}
	for _, r := range rows {
		if r.Leader {
			out.LeaderId = uint64(r.ID)
		}
		out.Members = append(out.Members, &kvdv1.Member{
			Id: uint64(r.ID), Role: roleProto(r.Role), RaftAddr: r.RaftAddr, ApiAddr: r.APIAddr,
			Leader: r.Leader, AppliedIndex: r.Applied, Ready: r.Ready, State: r.State.String(), Lag: r.Lag,
			Reason: r.Reason, DownForMs: uint64(r.DownFor / time.Millisecond),
		})
	}
	return connect.NewResponse(out), nil
}

func (s *clusterServer) Join(ctx context.Context, req *connect.Request[kvdv1.JoinRequest]) (*connect.Response[kvdv1.JoinResponse], error) {
	m := req.Msg
	err := membership.Admit(ctx, s.view, membership.JoinRequest{
		ReplicaID: membership.ReplicaID(m.ReplicaId), RaftAddr: m.RaftAddr, APIAddr: m.ApiAddr, Token: m.JoinToken,
	})
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&kvdv1.JoinResponse{}), nil
}

func (s *clusterServer) Promote(ctx context.Context, req *connect.Request[kvdv1.PromoteRequest]) (*connect.Response[kvdv1.PromoteResponse], error) {
	id := membership.ReplicaID(req.Msg.Id)
	ms, err := s.view.Membership(ctx)
	if err != nil {
		return nil, toConnect(err)
	}
	if _, ok := ms.Voters[id]; ok {
		return connect.NewResponse(&kvdv1.PromoteResponse{}), nil
	}
	addr, ok := ms.Observers[id]
	if !ok {
		return nil, toConnect(fmt.Errorf("%w: replica %d is not an observer of this cluster (see kvctl members)", membership.ErrNotMember, id))
	}
	if err := s.view.AddVoter(ctx, id, addr, ms.ConfigChangeID); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&kvdv1.PromoteResponse{}), nil
}

func (s *clusterServer) Remove(ctx context.Context, req *connect.Request[kvdv1.RemoveRequest]) (*connect.Response[kvdv1.RemoveResponse], error) {
	id := membership.ReplicaID(req.Msg.Id)
	ms, err := s.view.Membership(ctx)
	if err != nil {
		return nil, toConnect(err)
	}
	if ms.RoleOf(id) == membership.RoleUnknown {
		return nil, toConnect(fmt.Errorf("%w: replica %d is not a member (see kvctl members)", membership.ErrNotMember, id))
	}
	rows, ccid, ok := s.view.Members()
	if err := membership.CheckRemoval(rows, ccid, ok, id); err != nil {
		return nil, toConnect(err)
	}
	if err := s.view.RemoveReplica(ctx, id, ms.ConfigChangeID); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&kvdv1.RemoveResponse{}), nil
}

func (s *clusterServer) TransferLeader(ctx context.Context, req *connect.Request[kvdv1.TransferLeaderRequest]) (*connect.Response[kvdv1.TransferLeaderResponse], error) {
	if err := s.view.TransferLeader(membership.ReplicaID(req.Msg.TargetId)); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&kvdv1.TransferLeaderResponse{}), nil
}

func (s *clusterServer) Snapshot(ctx context.Context, _ *connect.Request[kvdv1.SnapshotRequest]) (*connect.Response[kvdv1.SnapshotResponse], error) {
	if err := s.view.Snapshot(ctx); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&kvdv1.SnapshotResponse{}), nil
}
