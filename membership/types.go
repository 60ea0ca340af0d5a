package membership

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
)

// ReplicaID names a replica in the Raft group; never 0, never reused.
type ReplicaID uint64

// Role of a replica in the Raft group.
type Role int

// Persisted nowhere, but shown to users: don't renumber.
const (
	RoleUnknown  Role = 0
	RoleVoter    Role = 1
	RoleObserver Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleVoter:
		return "voter"
	case RoleObserver:
		return "observer"
	}
	return "unknown"
}

// State is where a member is in its life: what a node says of itself
// (node.Status, the Status RPC) and a node's view of every member (Members
// rows, kvctl members). Its String is what the API sends: never rename one.
// Starting to stopped are what a member says of itself; the last three are
// the viewer's verdict on a member.
type State int

const (
	// StateUnknown: a state this version does not know (a newer member's);
	// in Local, none said.
	StateUnknown State = iota
	// StateStarting: the replica runs but has no role in its membership yet.
	StateStarting
	// StateCatchingUp: no ReadIndex has proved the node's state recent yet.
	StateCatchingUp
	// StateReady: caught up, with a leader and a quorum (node/readiness.go).
	StateReady
	// StateIsolated: it was ready, then had no leader, or completed no
	// ReadIndex, for the bound (node/readiness.go).
	StateIsolated
	// StateRemoved: the replica was removed from the cluster.
	StateRemoved
	// StateStopped: the node was stopped.
	StateStopped
	// StateStalled: answers and says it is ready, but does not follow the
	// leader's log (Policy.Following).
	StateStalled
	// StateJoining: a member that has not published its API address yet.
	StateJoining
	// StateUnreachable: its API does not answer (or answers as another replica).
	StateUnreachable
)

var stateNames = [...]string{
	StateUnknown: "unknown", StateStarting: "starting", StateCatchingUp: "catching-up", StateReady: "ready",
	StateIsolated: "isolated", StateRemoved: "removed", StateStopped: "stopped",
	StateStalled: "stalled", StateJoining: "joining", StateUnreachable: "unreachable",
}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return stateNames[StateUnknown]
	}
	return stateNames[s]
}

// ParseState reads a state as String writes it (a member's own, over the
// API); StateUnknown for any other text.
func ParseState(text string) State {
	for s, name := range stateNames {
		if name == text {
			return State(s)
		}
	}
	return StateUnknown
}

// Membership is the Raft group's membership (the authority on roles).
type Membership struct {
	ConfigChangeID uint64
	Voters         map[ReplicaID]string // ID → Raft address
	Observers      map[ReplicaID]string
	Removed        map[ReplicaID]bool
}

// RoleOf returns id's role, or RoleUnknown when it is not a member.
func (m Membership) RoleOf(id ReplicaID) Role {
	if _, ok := m.Voters[id]; ok {
		return RoleVoter
	}
	if _, ok := m.Observers[id]; ok {
		return RoleObserver
	}
	return RoleUnknown
}

// Errors of the membership layer.
var (
	// ErrRemoved: this replica was removed from the cluster; Dragonboat never
	// re-admits a removed ID.
	ErrRemoved = errors.New("membership: replica removed from the cluster")
	// ErrIdentityMismatch: the flags name another replica than the data dir holds.
	ErrIdentityMismatch = errors.New("membership: identity mismatch")
	// ErrBadFlags: the start-up flags contradict each other.
	ErrBadFlags = errors.New("membership: invalid flags")
	// ErrNoQuorum: the change would leave fewer live voters than a quorum.
	ErrNoQuorum = errors.New("membership: change would break the quorum")
	// ErrNotMember: the replica is not a member.
	ErrNotMember = errors.New("membership: not a member")
	// ErrPermissionDenied: wrong or missing join secret.
	ErrPermissionDenied = errors.New("membership: wrong join secret")
	// ErrNotSameNode: a Join names an existing member but does not prove it
	// is that member (its join token); the member is left untouched.
	ErrNotSameNode = errors.New("membership: join for an existing member without its join token")
	// ErrNoView: this node has not probed the members yet (it is starting
	// or catching up); ask again, or ask another node.
	ErrNoView = errors.New("membership: this node has no view of the members yet")
	// ErrStateLost: this replica ran before, but its Raft state is gone; it
	// must not vote again with an empty log.
	ErrStateLost = errors.New("membership: replica's Raft state was lost")
)

// NewReplicaID returns a random ID for a joining replica, above 2^20 and
// below 2^53: IDs of static initial members are small (1..N), random 53-bit
// IDs don't collide in practice (Dragonboat rejects a duplicate anyway), and
// they survive JSON tools that read numbers as doubles (jq, JavaScript).
func NewReplicaID() ReplicaID {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err)
		}
		if id := ReplicaID(binary.LittleEndian.Uint64(b[:]) >> 11); id > 1<<20 {
			return id
		}
	}
}
