package node

import (
	"time"

	"github.com/lni/dragonboat/v4"

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
	if n.stopped.Load() {
		return Status{ReplicaID: n.id.ReplicaID, RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr, State: membership.StateStopped}
	}
	return n.status(n.shardInfo())
}

// status is Status from the shard's info (ok: Dragonboat has it).
func (n *Node) status(si dragonboat.ShardInfo, ok bool) Status {
	s := Status{ReplicaID: n.id.ReplicaID, RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr}
	l := n.local(si, ok)
	s.Role, s.LeaderID, s.Applied, s.Ready, s.State, s.Reason = l.Role, l.LeaderID, l.Applied, l.Ready, l.State, l.Reason
	if s.Reason == "" {
		s.Reason = n.Reason(s.Ready)
	}
	if s.State == membership.StateRemoved {
		return s
	}
	s.Term = si.Term
	s.Voters, s.Observers = n.countMembers(len(si.Replicas))
	if !s.Ready {
		s.CatchUpTarget = n.catchTarget.Load()
	}
	return s
}

// stateOf is this node's state, decided here only: Status reports it, and
// Local hands it to the membership tracker for this node's own row of the
// members view. Removed first, then ready, then why readiness was revoked
// (isolated); a replica with a role in its membership is catching up, one
// without a role yet (a joiner replaying its log, a shard still pending)
// is starting. why is nil unless readiness was revoked.
func stateOf(role membership.Role, ready, removed bool, why *unready) (membership.State, string) {
	switch {
	case removed:
		return membership.StateRemoved, removedReason
	case ready:
		return membership.StateReady, ""
	case why != nil:
		return why.state, why.reason
	case role != membership.RoleUnknown:
		return membership.StateCatchingUp, ""
	}
	return membership.StateStarting, ""
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
