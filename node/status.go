package node

import (
	"time"

	"github.com/kvd-project/kvd/membership"
)

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
	State             membership.State // membership.StateStarting to membership.StateStopped
	Reason            string
}

// Status reads the local view of the replica.
func (n *Node) Status() Status {
	s := Status{ReplicaID: n.id.ReplicaID, RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr, State: membership.StateStopped}
	if n.stopped.Load() {
		return s
	}
	si, ok := n.shardInfo()
	l := n.local(si, ok)
	s.Role, s.LeaderID, s.Applied, s.Ready = l.Role, l.LeaderID, l.Applied, l.Ready
	s.State, s.Reason = membership.StateStarting, n.Reason()
	if n.isRemovedNow() {
		s.State, s.Reason = membership.StateRemoved, removedReason
		return s
	}
	s.Term = si.Term
	s.Voters, s.Observers = n.countMembers(len(si.Replicas))
	switch u, revoked := n.readiness(); {
	case s.Ready:
		s.State = membership.StateReady
	case revoked:
		s.State, s.Reason = u.state, u.reason
	case s.Role != membership.RoleUnknown:
		s.State = membership.StateCatchingUp
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
