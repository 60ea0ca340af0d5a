package rpc

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/node"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// ClusterView is what the Cluster handlers need from a node.
type ClusterView interface {
	Status() node.Status
	Membership(ctx context.Context) (node.Membership, error)
	MembersMeta(ctx context.Context, mode node.ReadMode) (map[node.ReplicaID]node.MemberMeta, error)
}

type clusterServer struct {
	view    ClusterView
	version string
	peers   *http.Client
}

// NewClusterServer returns the kvd.v1.Cluster handler implementation.
func NewClusterServer(view ClusterView, version string) kvdv1connect.ClusterHandler {
	return &clusterServer{
		view:    view,
		version: version,
		peers:   &http.Client{Timeout: 2 * time.Second},
	}
}

func roleProto(r node.Role) kvdv1.Role {
	switch r {
	case node.RoleVoter:
		return kvdv1.Role_ROLE_VOTER
	case node.RoleObserver:
		return kvdv1.Role_ROLE_OBSERVER
	}
	return kvdv1.Role_ROLE_UNSPECIFIED
}

func (s *clusterServer) statusProto() *kvdv1.StatusResponse {
	st := s.view.Status()
	return &kvdv1.StatusResponse{
		Id:           uint64(st.ReplicaID),
		Role:         roleProto(st.Role),
		LeaderId:     uint64(st.LeaderID),
		Term:         st.Term,
		AppliedIndex: st.Applied,
		Ready:        st.Ready,
		RaftAddr:     st.RaftAddr,
		ApiAddr:      st.APIAddr,
		State:        st.State,
		Version:      s.version,
		Voters:       uint64(st.Voters),
	}
}

func (s *clusterServer) Status(ctx context.Context, _ *connect.Request[kvdv1.StatusRequest]) (*connect.Response[kvdv1.StatusResponse], error) {
	return connect.NewResponse(s.statusProto()), nil
}

// Members combines the Raft membership (the authority on roles), the
// replicated member metadata (API addresses) and each member's own status,
// asked over its API address in parallel.
func (s *clusterServer) Members(ctx context.Context, _ *connect.Request[kvdv1.MembersRequest]) (*connect.Response[kvdv1.MembersResponse], error) {
	ms, err := s.view.Membership(ctx)
	if err != nil {
		return nil, toConnect(err)
	}
	meta, err := s.view.MembersMeta(ctx, node.Serializable)
	if err != nil {
		// Not caught up: fall back to a linearizable read of the metadata.
		if meta, err = s.view.MembersMeta(ctx, node.Linearizable); err != nil {
			return nil, toConnect(err)
		}
	}
	self := s.statusProto()
	out := &kvdv1.MembersResponse{LeaderId: self.LeaderId, ConfigChangeId: ms.ConfigChangeID}
	add := func(id node.ReplicaID, addr string, role kvdv1.Role) {
		out.Members = append(out.Members, &kvdv1.Member{
			Id: uint64(id), Role: role, RaftAddr: addr, ApiAddr: meta[id].APIAddr,
			Leader: uint64(id) == self.LeaderId,
		})
	}
	for id, addr := range ms.Voters {
		add(id, addr, kvdv1.Role_ROLE_VOTER)
	}
	for id, addr := range ms.Observers {
		add(id, addr, kvdv1.Role_ROLE_OBSERVER)
	}
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].Id < out.Members[j].Id })

	var wg sync.WaitGroup
	for _, m := range out.Members {
		if m.Id == self.Id {
			fill(m, self)
			continue
		}
		if m.ApiAddr == "" {
			m.State, m.Reason = "unknown", "API address not published yet"
			continue
		}
		wg.Add(1)
		go func(m *kvdv1.Member) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			c := kvdv1connect.NewClusterClient(s.peers, "http://"+m.ApiAddr)
			resp, err := c.Status(cctx, connect.NewRequest(&kvdv1.StatusRequest{}))
			if err != nil {
				m.State, m.Reason = "unreachable", err.Error()
				return
			}
			fill(m, resp.Msg)
		}(m)
	}
	wg.Wait()
	var leaderApplied uint64
	for _, m := range out.Members {
		if m.Leader {
			leaderApplied = m.AppliedIndex
		}
	}
	for _, m := range out.Members {
		if m.State != "unreachable" && leaderApplied > m.AppliedIndex {
			m.Lag = leaderApplied - m.AppliedIndex
		}
	}
	return connect.NewResponse(out), nil
}

func fill(m *kvdv1.Member, st *kvdv1.StatusResponse) {
	m.AppliedIndex = st.AppliedIndex
	m.Ready = st.Ready
	m.State = st.State
}
