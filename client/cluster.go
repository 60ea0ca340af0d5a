package client

import (
	"context"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// MemberID is a member's Raft replica ID.
type MemberID uint64

// Role is a member's role in the Raft group.
type Role int

const (
	RoleUnspecified Role = iota
	// RoleVoter votes in elections and counts toward quorum.
	RoleVoter
	// RoleObserver receives the log but does not vote.
	RoleObserver
)

// String returns "voter", "observer" or "unspecified".
func (r Role) String() string {
	switch r {
	case RoleVoter:
		return "voter"
	case RoleObserver:
		return "observer"
	}
	return "unspecified"
}

func roleFromProto(r kvdv1.Role) Role {
	switch r {
	case kvdv1.Role_ROLE_VOTER:
		return RoleVoter
	case kvdv1.Role_ROLE_OBSERVER:
		return RoleObserver
	}
	return RoleUnspecified
}

// Member is one member of the cluster as seen by the answering node.
type Member struct {
	ID       MemberID
	Role     Role
	RaftAddr string
	// APIAddr is empty until the member has published it.
	APIAddr      string
	Leader       bool
	AppliedIndex uint64
	Ready        bool
	// State is what the member last said of itself ("starting",
	// "catching-up", "ready", "isolated": lost its leader or quorum,
	// "removed", "stopped"), or the answering node's verdict on it:
	// "stalled" (answers, but does not follow the leader's log), "joining"
	// (has not published its API address yet) or "unreachable"; "unknown"
	// is a state the answering node's version does not know.
	State string
	// Lag is the leader's applied index minus this member's, when known.
	Lag uint64
	// Reason explains State (why an observer is not promoted, or the error
	// that made the member unreachable).
	Reason string
	// DownFor is how long the answering node has not reached the member
	// (0 = reachable), to the millisecond.
	DownFor time.Duration
}

// MembersResult is the membership as seen by the answering node.
type MembersResult struct {
	Members        []Member
	LeaderID       MemberID
	ConfigChangeID uint64
	// RemovedIDs are the IDs removed from the cluster, which it never
	// admits again.
	RemovedIDs []MemberID
	// Endpoint is the endpoint that answered.
	Endpoint string
}

// Members lists every member with its role and health. The answering node
// asks each member for its status, so this is slower than Status.
func (c *Client) Members(ctx context.Context) (*MembersResult, error) {
	return do(ctx, c, call{op: opMembers},
		func(ctx context.Context, ep *endpoint) (*MembersResult, error) {
			resp, err := ep.cluster.Members(ctx, connect.NewRequest(&kvdv1.MembersRequest{}))
			if err != nil {
				return nil, err
			}
			return membersFromProto(resp.Msg, ep.name), nil
		})
}

func membersFromProto(m *kvdv1.MembersResponse, endpoint string) *MembersResult {
	res := &MembersResult{
		LeaderID:       MemberID(m.GetLeaderId()),
		ConfigChangeID: m.GetConfigChangeId(),
		Endpoint:       endpoint,
		Members:        make([]Member, 0, len(m.GetMembers())),
	}
	for _, pm := range m.GetMembers() {
		res.Members = append(res.Members, memberFromProto(pm))
	}
	for _, id := range m.GetRemovedIds() {
		res.RemovedIDs = append(res.RemovedIDs, MemberID(id))
	}
	return res
}

func memberFromProto(m *kvdv1.Member) Member {
	return Member{
		ID:           MemberID(m.GetId()),
		Role:         roleFromProto(m.GetRole()),
		RaftAddr:     m.GetRaftAddr(),
		APIAddr:      m.GetApiAddr(),
		Leader:       m.GetLeader(),
		AppliedIndex: m.GetAppliedIndex(),
		Ready:        m.GetReady(),
		State:        m.GetState(),
		Lag:          m.GetLag(),
		Reason:       m.GetReason(),
		DownFor:      time.Duration(m.GetDownForMs()) * time.Millisecond,
	}
}

// Status is one node's own view of itself and the cluster.
type Status struct {
	// Endpoint is the endpoint that answered.
	Endpoint     string
	ID           MemberID
	Role         Role
	LeaderID     MemberID // 0 when the node knows no leader
	Term         uint64
	AppliedIndex uint64
	Ready        bool
	RaftAddr     string
	APIAddr      string
	// State is "starting", "catching-up", "ready", "isolated" (was ready,
	// then had no leader or no ReadIndex for the bound; Reason says which),
	// "removed" or "stopped".
	State     string
	Version   string
	Voters    uint64
	Observers uint64
	// Reason explains State (e.g. why an observer is not promoted).
	Reason string
	// CatchUpTarget is, while catching up, the leader's applied index as
	// last asked (0 = unknown): the node is at AppliedIndex of CatchUpTarget.
	CatchUpTarget uint64
}

// Status asks the current endpoint (failing over like any read) for its own
// view. To ask one particular node, use Raw(endpoint).Cluster.Status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	return do(ctx, c, call{op: opStatus},
		func(ctx context.Context, ep *endpoint) (*Status, error) {
			resp, err := ep.cluster.Status(ctx, connect.NewRequest(&kvdv1.StatusRequest{}))
			if err != nil {
				return nil, err
			}
			m := resp.Msg
			return &Status{
				Endpoint:      ep.name,
				ID:            MemberID(m.GetId()),
				Role:          roleFromProto(m.GetRole()),
				LeaderID:      MemberID(m.GetLeaderId()),
				Term:          m.GetTerm(),
				AppliedIndex:  m.GetAppliedIndex(),
				Ready:         m.GetReady(),
				RaftAddr:      m.GetRaftAddr(),
				APIAddr:       m.GetApiAddr(),
				State:         m.GetState(),
				Version:       m.GetVersion(),
				Voters:        m.GetVoters(),
				Observers:     m.GetObservers(),
				Reason:        m.GetReason(),
				CatchUpTarget: m.GetCatchUpTarget(),
			}, nil
		})
}
