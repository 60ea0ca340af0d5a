package node

import (
	"time"

	"github.com/kvd-project/kvd/membership"
)

// State is where a node is in its life, as Status reports it. Its String
// is what the API and kvctl show; those strings never change.
type State int

const (
	// StateStarting: the replica runs but has no role in its membership yet.
	StateStarting State = iota
	// StateCatchingUp: no ReadIndex has proved the node's state recent yet.
	StateCatchingUp
	// StateReady: caught up, with a leader and a quorum (readiness.go).
	StateReady
	// StateIsolated: it was ready, then had no leader, or completed no
	// ReadIndex, for NotReadyAfter.
	StateIsolated
	// StateRemoved: the replica was removed from the cluster.
	StateRemoved
	// StateStopped: Stop was called.
	StateStopped
)

var stateNames = [...]string{
	StateStarting:   "starting",
	StateCatchingUp: "catching-up",
	StateReady:      "ready",
	StateIsolated:   "isolated",
	StateRemoved:    "removed",
	StateStopped:    "stopped",
}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Status is this node's own, local view (not linearizable).
type Status struct {
	ReplicaID membership.ReplicaID
	Role      membership.Role
	LeaderID  membership.ReplicaID
	Term      uint64
	Applied   uint64
	// CatchUpTarget: while catching up, the leader's (or a seed's) applied
	// index as last asked; 0 = unknown.
	CatchUpTarget uint64
	Ready         bool
	RaftAddr      string
	APIAddr       string
	// Voters and Observers count the members: from this node's members
	// view once it has one, before that from its applied membership (which
	// gives no observer count).
	Voters, Observers int
	State             State
	Reason            string
}

// Status reads the local view of the replica.
func (n *Node) Status() Status {
	s := Status{ReplicaID: n.id.ReplicaID, RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr, State: StateStopped}
	if n.stopped.Load() {
		return s
	}
	si, ok := n.shardInfo()
	l := n.local(si, ok)
	s.Role, s.LeaderID, s.Applied, s.Ready = l.Role, l.LeaderID, l.Applied, l.Ready
	s.State, s.Reason = StateStarting, n.Reason()
	if n.isRemovedNow() {
		s.State, s.Reason = StateRemoved, removedReason
		return s
	}
	s.Term = si.Term
	s.Voters, s.Observers = n.countMembers(len(si.Replicas))
	switch u, revoked := n.readiness(); {
	case s.Ready:
		s.State = StateReady
	case revoked:
		s.State, s.Reason = u.state, u.reason
	case s.Role != membership.RoleUnknown:
		s.State = StateCatchingUp
	}
	if !s.Ready {
		s.CatchUpTarget = n.catchTarget.Load()
	}
	return s
}

// countMembers counts voters and observers in the members view, or
// returns the applied membership's voter count before there is a view.
func (n *Node) countMembers(appliedVoters int) (voters, observers int) {
	rows, _, ok := n.Members()
	if !ok {
		return appliedVoters, 0
	}
	for _, r := range rows {
		if r.Role == membership.RoleVoter {
			voters++
		} else {
			observers++
		}
	}
	return voters, observers
}

// NotReadyAfter is the bound after which a node that lost its leader or
// cannot complete a ReadIndex stops being ready (Config.NotReadyAfter).
func (n *Node) NotReadyAfter() time.Duration { return n.cfg.NotReadyAfter() }
