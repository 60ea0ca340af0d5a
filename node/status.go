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
	Voters        int
	State         string // starting, catching-up, ready, isolated, removed, stopped
	Reason        string
}

// Status reads the local view of the replica.
func (n *Node) Status() Status {
	if n.stopped.Load() {
		return Status{ReplicaID: n.id.ReplicaID, RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr, State: "stopped"}
	}
	l := n.Local()
	s := Status{
		ReplicaID: n.id.ReplicaID, Role: l.Role, LeaderID: l.LeaderID, Applied: l.Applied,
		Ready: l.Ready, RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr, State: "starting",
		Reason: n.Reason(),
	}
	select {
	case <-n.removed:
		s.State, s.Reason = "removed", "removed from the cluster; restart with --rejoin to join under a new ID"
		return s
	default:
	}
	for _, si := range n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true}).ShardInfoList {
		if si.ShardID == ShardID {
			s.Term = si.Term
			s.Voters = len(si.Replicas)
		}
	}
	switch state, reason := n.readiness(); {
	case s.Ready:
		s.State = "ready"
	case state != "":
		s.State, s.Reason = state, reason
	case s.Role != membership.RoleUnknown:
		s.State = "catching-up"
	}
	if !s.Ready {
		s.CatchUpTarget = n.catchTarget.Load()
	}
	return s
}

// NotReadyAfter is the bound after which a node that lost its leader or
// cannot complete a ReadIndex stops being ready (Config.NotReadyAfter).
func (n *Node) NotReadyAfter() time.Duration { return n.cfg.NotReadyAfter() }
