package membership

import (
	"context"
	"time"
)

// Local is the local replica's own view (not linearizable).
type Local struct {
	Role     Role
	LeaderID ReplicaID
	Applied  uint64
	Ready    bool
	// State is the node's state as its Status reports it (StateStarting
	// to StateRemoved): the node decides it once, and this node's row of
	// the members view shows it as given. Reason says why a node that was
	// ready is not any more (StateIsolated, StateRemoved); "" otherwise.
	State  State
	Reason string
}

// Meta is a member's replicated metadata (the state machine's reserved
// keyspace): what Raft membership does not know.
type Meta struct {
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	Origin   Origin `json:"origin"`
	// TokenHash is the SHA-256 (hex) of the member's join token; "" for
	// initial members, which never join.
	TokenHash string `json:"token_hash,omitempty"`
}

// Host is what membership needs from the local replica; *node.Node
// implements it. Every call is bounded by ctx.
type Host interface {
	ID() ReplicaID
	RaftAddr() string
	Local() Local
	// Membership is a linearizable read of the Raft membership.
	Membership(ctx context.Context) (Membership, error)
	// Metas reads the replicated member metadata locally.
	Metas(ctx context.Context) (map[ReplicaID]Meta, error)
	PutMeta(ctx context.Context, id ReplicaID, m Meta) error
	AddObserver(ctx context.Context, id ReplicaID, raftAddr string, ccid uint64) error
	AddVoter(ctx context.Context, id ReplicaID, raftAddr string, ccid uint64) error
	RemoveReplica(ctx context.Context, id ReplicaID, ccid uint64) error
	// Snapshot takes a local snapshot so that it embeds the current membership.
	Snapshot(ctx context.Context) error
	// MarkRemoved records that this replica was removed; it stops serving.
	MarkRemoved()
}

// PeerStatus is a member's own status, asked over its API address.
type PeerStatus struct {
	ID       ReplicaID
	Role     Role
	LeaderID ReplicaID
	Applied  uint64
	Ready    bool
	State    State
	Reason   string
}

// JoinRequest asks a member to add a replica as an observer.
type JoinRequest struct {
	ReplicaID ReplicaID
	RaftAddr  string
	APIAddr   string
	// Token is the joiner's join token (Identity.JoinToken): a Join for an
	// existing member is accepted again only with the same token.
	Token string
}

// PeerDialer calls other members' APIs; package rpc implements it with
// Connect clients (membership knows nothing of HTTP).
type PeerDialer interface {
	Status(ctx context.Context, apiAddr string) (PeerStatus, error)
	// View is the member's published view of the cluster (Cluster.Members);
	// the leader's is the one that counts.
	View(ctx context.Context, apiAddr string) (View, error)
	Join(ctx context.Context, apiAddr string, req JoinRequest) error
	// Remove asks a member to remove id (Cluster.Remove: the join secret
	// and the quorum guard apply). An id that is no member is no error.
	Remove(ctx context.Context, apiAddr string, id ReplicaID) error
	// Identify asks a node who it is and whether it runs a cluster.
	Identify(ctx context.Context, apiAddr string) (PeerIdentity, error)
}

// MemberInfo is one row of Cluster.Members.
type MemberInfo struct {
	ID       ReplicaID
	Role     Role
	RaftAddr string
	APIAddr  string
	Leader   bool
	Applied  uint64
	Ready    bool
	State    State
	Lag      uint64
	Reason   string
	// DownFor: how long the member has not been live (tracker); 0 = live.
	DownFor time.Duration
	// LiveFor: how long it has been live without a break; 0 = down.
	LiveFor time.Duration
}
