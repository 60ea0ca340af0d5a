package node

import (
	"context"
	"fmt"
	"time"

	"github.com/lni/dragonboat/v4"
)

// Status is this node's own, local view (not linearizable).
type Status struct {
	ReplicaID ReplicaID
	Role      Role
	LeaderID  ReplicaID
	Term      uint64
	Applied   uint64
	Ready     bool
	RaftAddr  string
	APIAddr   string
	Voters    int
	State     string // starting, catching-up, ready
}

// Status reads the local view of the replica.
func (n *Node) Status() Status {
	s := Status{
		ReplicaID: n.id.ReplicaID,
		RaftAddr:  n.cfg.RaftAddr,
		APIAddr:   n.cfg.APIAddr,
		Ready:     n.ready.Load(),
		Applied:   n.appliedIndex(),
		State:     "starting",
	}
	if n.stopped.Load() {
		s.State = "stopped"
		return s
	}
	for _, si := range n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true}).ShardInfoList {
		if si.ShardID != ShardID {
			continue
		}
		s.Role = RoleVoter
		if si.IsNonVoting {
			s.Role = RoleObserver
		}
		s.LeaderID = ReplicaID(si.LeaderID)
		s.Term = si.Term
		s.Voters = len(si.Replicas)
		if !si.Pending {
			s.State = "catching-up"
		}
	}
	if s.Ready {
		s.State = "ready"
	}
	return s
}

// Membership is the Raft group's membership as applied by the leader.
type Membership struct {
	ConfigChangeID uint64
	Voters         map[ReplicaID]string
	Observers      map[ReplicaID]string
	Removed        map[ReplicaID]bool
}

// Membership reads the membership linearizably (ReadIndex then local read).
func (n *Node) Membership(ctx context.Context) (Membership, error) {
	if n.stopped.Load() {
		return Membership{}, ErrStopped
	}
	ctx, cancel := withDeadline(ctx, 5*time.Second)
	defer cancel()
	m, err := n.nh.SyncGetShardMembership(ctx, ShardID)
	if err != nil {
		return Membership{}, fmt.Errorf("membership: %w", err)
	}
	out := Membership{
		ConfigChangeID: m.ConfigChangeID,
		Voters:         map[ReplicaID]string{},
		Observers:      map[ReplicaID]string{},
		Removed:        map[ReplicaID]bool{},
	}
	for id, a := range m.Nodes {
		out.Voters[ReplicaID(id)] = a
	}
	for id, a := range m.NonVotings {
		out.Observers[ReplicaID(id)] = a
	}
	for id := range m.Removed {
		out.Removed[ReplicaID(id)] = true
	}
	return out, nil
}
