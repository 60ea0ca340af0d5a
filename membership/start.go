package membership

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
)

// LocalState is what the data directory says before Dragonboat starts.
type LocalState struct {
	Identity     *Identity // nil: never started here
	HasRaftState bool      // Dragonboat has a bootstrap record for the replica
	Removed      bool      // the removal marker is present
	// Started: the started marker is present (MarkStarted): Dragonboat may
	// have run the replica in the identity.
	Started bool
	// RanBefore (no identity, static initial member): a peer says this
	// replica ID has run in the formed cluster (published its metadata) or
	// was removed from it; the text says who and what.
	RanBefore string
}

// StartFlags are the start-up flags that matter to the decision.
type StartFlags struct {
	DataDir        string
	ReplicaID      ReplicaID // 0 = not given
	RaftAddr       string
	APIAddr        string
	InitialMembers map[ReplicaID]string
	Join           bool // --join seeds (or discovery) given
	Rejoin         bool
}

// Plan is the outcome of DecideStart: how to call StartOnDiskReplica.
type Plan struct {
	// Wipe: delete the removed replica's state, then decide again.
	Wipe      bool
	Identity  Identity
	NewID     bool                 // Identity is new: save it before starting
	Members   map[ReplicaID]string // initial members; nil on restart and join
	Join      bool                 // StartOnDiskReplica's join argument
	NonVoting bool
	Restart   bool // Dragonboat has state for the replica
	// CallJoin: ask a member to add this replica (idempotent) before starting.
	CallJoin bool
	// Replaces: the old ID of this node, which lost its Raft state; have a
	// member remove it before joining under the new one (--rejoin).
	Replaces ReplicaID
	// WipeStateMachine: before saving the new identity, delete the state
	// machine (sm/) and the files (identity, markers) of Replaces, whose
	// Raft state was lost; raft/ holds nothing of it.
	WipeStateMachine bool
}

// DecideStart is the start-up decision (design.md §4), a pure function:
// local state first, then the initial members, then join, then a
// single-voter cluster. The same flags work for the first start and every
// restart.
func DecideStart(local LocalState, f StartFlags) (Plan, error) {
	switch {
	case local.Removed:
		return decideRemoved(local, f)
	case local.Identity != nil:
		return decideRestart(local, *local.Identity, f)
	case local.HasRaftState:
		return Plan{}, fmt.Errorf("%w: %s has Raft state but no %s; restore the file or move the data dir away",
			ErrIdentityMismatch, f.DataDir, identityFile)
	}
	if len(f.InitialMembers) > 0 {
		rid, inList := InitialMemberID(f)
		if inList {
			return decideInitialMember(local, f, rid)
		}
		if !f.Join {
			return Plan{}, fmt.Errorf("%w: this node (ID %d, raft address %s) is not in --initial-members (%s); "+
				"fix --node-id/--raft-addr, or add --join to join the running cluster",
				ErrBadFlags, f.ReplicaID, f.RaftAddr, FormatMembers(f.InitialMembers))
		}
	}
	if f.Join {
		rid := f.ReplicaID
		if rid == 0 {
			rid = NewReplicaID()
		}
		return Plan{Identity: Identity{ReplicaID: rid, Origin: OriginJoin, RaftAddr: f.RaftAddr, APIAddr: f.APIAddr},
			NewID: true, Join: true, NonVoting: true, CallJoin: true}, nil
	}
	rid := f.ReplicaID
	if rid == 0 {
		rid = 1
	}
	members := map[ReplicaID]string{rid: f.RaftAddr}
	return Plan{Identity: Identity{ReplicaID: rid, Origin: OriginBootstrap, RaftAddr: f.RaftAddr, APIAddr: f.APIAddr, InitialMembers: members},
		NewID: true, Members: members}, nil
}

// decideRemoved: a removed replica refuses to start, or with --rejoin
// wipes its state (and decides again).
func decideRemoved(local LocalState, f StartFlags) (Plan, error) {
	if !f.Rejoin {
		id := ReplicaID(0)
		if local.Identity != nil {
			id = local.Identity.ReplicaID
		}
		return Plan{}, fmt.Errorf("%w: replica %d in %s was removed from the cluster and will not serve; "+
			"restart with --rejoin (and --join) to wipe its state and join under a new ID", ErrRemoved, id, f.DataDir)
	}
	if !f.Join {
		return Plan{}, fmt.Errorf("%w: --rejoin needs --join (or discovery) to find the cluster", ErrBadFlags)
	}
	return Plan{Wipe: true}, nil
}

// decideRestart: a replica with an identity restarts with it, unless the
// flags contradict it or its Raft state is lost.
func decideRestart(local LocalState, id Identity, f StartFlags) (Plan, error) {
	if f.ReplicaID != 0 && f.ReplicaID != id.ReplicaID && f.ReplicaID != id.Replaced {
		return Plan{}, fmt.Errorf("%w: --node-id is %d but the data dir %s belongs to replica %d; use that ID or another data dir",
			ErrIdentityMismatch, f.ReplicaID, f.DataDir, id.ReplicaID)
	}
	if id.RaftAddr != f.RaftAddr {
		return Plan{}, fmt.Errorf("%w: raft address is %s but replica %d in %s was created with %s; Raft peers know it by that address",
			ErrIdentityMismatch, f.RaftAddr, id.ReplicaID, f.DataDir, id.RaftAddr)
	}
	if !local.HasRaftState && local.Started {
		// Dragonboat ran this replica, and its log is gone: with an
		// empty log it could vote away a committed entry.
		if !f.Rejoin {
			return Plan{}, fmt.Errorf("%w: replica %d in %s ran before, but its Raft state (raft/) is gone; "+
				"it must not vote again with an empty log. Restore the data dir, or restart with --rejoin "+
				"(and --join with members' API addresses): it removes replica %d through a member and joins under a new ID",
				ErrStateLost, id.ReplicaID, f.DataDir, id.ReplicaID)
		}
		plan, err := rejoin(f, id.ReplicaID)
		if err != nil {
			return Plan{}, err
		}
		plan.WipeStateMachine = true
		return plan, nil
	}
	plan := Plan{Identity: id, Restart: local.HasRaftState}
	switch id.Origin {
	case OriginJoin:
		// A joined replica always starts non-voting: Dragonboat promotes
		// it again from its snapshot or log (dragonboat.md §4).
		plan.Join, plan.NonVoting = true, true
		// Crashed after saving the identity, perhaps after Join
		// returned: Join is idempotent, ask again.
		plan.CallJoin = !local.HasRaftState
	case OriginBootstrap:
		if !local.HasRaftState {
			// Crashed after saving the identity, before Dragonboat
			// saved its bootstrap record: bootstrap as planned, with
			// the members saved then (agreed with peers under
			// --bootstrap-expect, where the flags name none).
			members, err := savedMembers(f, id)
			if err != nil {
				return Plan{}, err
			}
			plan.Members = members
		}
	}
	return plan, nil
}

// decideInitialMember: a node named in --initial-members (as replica rid)
// without an identity bootstraps them, unless it ran before.
func decideInitialMember(local LocalState, f StartFlags, rid ReplicaID) (Plan, error) {
	switch {
	case local.RanBefore != "" && !f.Rejoin:
		return Plan{}, fmt.Errorf("%w: this node (replica %d, raft address %s) has no state in %s, but %s: "+
			"bootstrapping it again would bring it back with an empty log. Restore the data dir, or restart with "+
			"--rejoin: it removes replica %d through a member and joins under a new ID",
			ErrStateLost, rid, f.RaftAddr, f.DataDir, local.RanBefore, rid)
	case f.Rejoin:
		// Never bootstrap an initial member's ID again once asked to
		// rejoin: it may have been removed, or have lost its log.
		return rejoin(f, rid)
	}
	members, err := initialMembers(f, rid)
	if err != nil {
		return Plan{}, err
	}
	return Plan{Identity: Identity{ReplicaID: rid, Origin: OriginBootstrap, RaftAddr: f.RaftAddr, APIAddr: f.APIAddr, InitialMembers: members},
		NewID: true, Members: members}, nil
}

// rejoin is the plan of a node that lost (or must give up) replica old: a
// new ID, joined as an observer once a member has removed old.
func rejoin(f StartFlags, old ReplicaID) (Plan, error) {
	if !f.Join {
		return Plan{}, fmt.Errorf("%w: --rejoin needs --join (members' API addresses) or discovery to find the cluster", ErrBadFlags)
	}
	return Plan{Identity: Identity{ReplicaID: NewReplicaID(), Origin: OriginJoin, RaftAddr: f.RaftAddr, APIAddr: f.APIAddr, Replaced: old},
		NewID: true, Join: true, NonVoting: true, CallJoin: true, Replaces: old}, nil
}

// savedMembers are the initial members an initial member saved in its
// identity (older identities have none: then the flags'); flags that name
// other members are refused.
func savedMembers(f StartFlags, id Identity) (map[ReplicaID]string, error) {
	if len(id.InitialMembers) == 0 {
		return initialMembers(f, id.ReplicaID)
	}
	if len(f.InitialMembers) > 0 && FormatMembers(f.InitialMembers) != FormatMembers(id.InitialMembers) {
		return nil, fmt.Errorf("%w: --initial-members (%s) differ from the members replica %d was created with (%s) in %s",
			ErrIdentityMismatch, FormatMembers(f.InitialMembers), id.ReplicaID, FormatMembers(id.InitialMembers), f.DataDir)
	}
	out := make(map[ReplicaID]string, len(id.InitialMembers))
	for rid, addr := range id.InitialMembers {
		out[rid] = addr
	}
	return out, nil
}

// InitialMemberID finds this node in InitialMembers: by ReplicaID when
// given (and its address must match), else by RaftAddr.
func InitialMemberID(f StartFlags) (ReplicaID, bool) {
	if f.ReplicaID != 0 {
		addr, ok := f.InitialMembers[f.ReplicaID]
		return f.ReplicaID, ok && addr == f.RaftAddr
	}
	for id, addr := range f.InitialMembers {
		if addr == f.RaftAddr {
			return id, true
		}
	}
	return 0, false
}

func initialMembers(f StartFlags, self ReplicaID) (map[ReplicaID]string, error) {
	if len(f.InitialMembers) == 0 {
		return map[ReplicaID]string{self: f.RaftAddr}, nil
	}
	if addr, ok := f.InitialMembers[self]; !ok || addr != f.RaftAddr {
		return nil, fmt.Errorf("%w: replica %d at %s is not in the initial members (%s)",
			ErrBadFlags, self, f.RaftAddr, FormatMembers(f.InitialMembers))
	}
	out := make(map[ReplicaID]string, len(f.InitialMembers))
	for id, addr := range f.InitialMembers {
		out[id] = addr
	}
	return out, nil
}

// FormatMembers prints members as "1=host:port,2=host:port", sorted by ID.
func FormatMembers(m map[ReplicaID]string) string {
	ids := make([]ReplicaID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%d=%s", id, m[id])
	}
	return strings.Join(parts, ",")
}

// ParseMembers parses "1=host:port,2=host:port".
func ParseMembers(s string) (map[ReplicaID]string, error) {
	out := map[ReplicaID]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		idStr, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("%w: initial member %q: want ID=host:port", ErrBadFlags, part)
		}
		id, err := strconv.ParseUint(idStr, 10, 64)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("%w: initial member %q: ID must be a positive integer", ErrBadFlags, part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: initial member %q: %v", ErrBadFlags, part, err)
		}
		if _, dup := out[ReplicaID(id)]; dup {
			return nil, fmt.Errorf("%w: initial member ID %d appears twice", ErrBadFlags, id)
		}
		out[ReplicaID(id)] = addr
	}
	return out, nil
}
