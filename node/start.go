package node

import "fmt"

// localState is what the data directory says before Dragonboat starts.
type localState struct {
	Identity     *Identity // nil: never started here
	HasRaftState bool      // Dragonboat has a bootstrap record for the replica
}

// startPlan is how to call StartOnDiskReplica.
type startPlan struct {
	Identity  Identity
	Members   map[ReplicaID]string // nil on restart
	Join      bool
	NonVoting bool
	Restart   bool
}

// decideStart is the start-up decision (design.md §4), a pure function:
// local state first, then the initial members, then a single-voter cluster.
func decideStart(local localState, cfg Config) (startPlan, error) {
	if id := local.Identity; id != nil {
		if cfg.ReplicaID != 0 && cfg.ReplicaID != id.ReplicaID {
			return startPlan{}, fmt.Errorf("%w: --node-id is %d but the data dir %s belongs to replica %d; use that ID or another data dir",
				ErrIdentityMismatch, cfg.ReplicaID, cfg.DataDir, id.ReplicaID)
		}
		if id.RaftAddr != cfg.RaftAddr {
			return startPlan{}, fmt.Errorf("%w: raft address is %s but replica %d in %s was created with %s; Raft peers know it by that address",
				ErrIdentityMismatch, cfg.RaftAddr, id.ReplicaID, cfg.DataDir, id.RaftAddr)
		}
		plan := startPlan{Identity: *id, Restart: local.HasRaftState}
		switch id.Origin {
		case OriginJoin:
			// A joined replica always restarts non-voting: Dragonboat
			// promotes it again from its snapshot or log (dragonboat.md §4).
			plan.Join, plan.NonVoting = true, true
		case OriginBootstrap:
			if !local.HasRaftState {
				// Crashed after writing the identity, before Dragonboat
				// saved its bootstrap record: bootstrap as planned.
				members, err := initialMembers(cfg, id.ReplicaID)
				if err != nil {
					return startPlan{}, err
				}
				plan.Members = members
			}
		}
		return plan, nil
	}
	if local.HasRaftState {
		return startPlan{}, fmt.Errorf("%w: %s has Raft state but no %s; restore the file or move the data dir away",
			ErrIdentityMismatch, cfg.DataDir, identityFile)
	}
	var rid ReplicaID
	if len(cfg.InitialMembers) > 0 {
		var err error
		if rid, err = cfg.memberID(); err != nil {
			return startPlan{}, err
		}
	} else {
		rid = cfg.ReplicaID
		if rid == 0 {
			rid = 1
		}
	}
	members, err := initialMembers(cfg, rid)
	if err != nil {
		return startPlan{}, err
	}
	return startPlan{
		Identity: Identity{ReplicaID: rid, Origin: OriginBootstrap, RaftAddr: cfg.RaftAddr, APIAddr: cfg.APIAddr},
		Members:  members,
	}, nil
}

func initialMembers(cfg Config, self ReplicaID) (map[ReplicaID]string, error) {
	if len(cfg.InitialMembers) == 0 {
		return map[ReplicaID]string{self: cfg.RaftAddr}, nil
	}
	if addr, ok := cfg.InitialMembers[self]; !ok || addr != cfg.RaftAddr {
		return nil, fmt.Errorf("%w: replica %d at %s is not in the initial members (%s)",
			ErrBadConfig, self, cfg.RaftAddr, FormatMembers(cfg.InitialMembers))
	}
	out := make(map[ReplicaID]string, len(cfg.InitialMembers))
	for id, addr := range cfg.InitialMembers {
		out[id] = addr
	}
	return out, nil
}
