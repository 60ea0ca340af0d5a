package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/kvd-project/kvd/membership"
)

// The steps of Start that decide who this replica is and how it starts
// (architecture.md "Start-up"). Each acts on what membership's pure
// functions return.

func startFlags(cfg Config) membership.StartFlags {
	return membership.StartFlags{
		DataDir: cfg.DataDir, ReplicaID: cfg.ReplicaID, RaftAddr: cfg.RaftAddr, APIAddr: cfg.APIAddr,
		InitialMembers: cfg.InitialMembers, Join: cfg.Seeds != nil, Rejoin: cfg.Rejoin,
	}
}

// loadIdentity reads the identity file. A replica that was removed goes
// by DecideStart: refused, or (--rejoin: Plan.Wipe) its state is wiped
// and it starts as a new node (nil identity).
func (n *Node) loadIdentity(flags membership.StartFlags) (*membership.Identity, error) {
	ident, err := membership.LoadIdentity(n.cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if !membership.IsRemoved(n.cfg.DataDir) {
		return ident, nil
	}
	plan, err := membership.DecideStart(membership.LocalState{Identity: ident, Removed: true}, flags)
	if err != nil {
		return nil, err
	}
	if !plan.Wipe {
		return ident, nil
	}
	var old uint64
	if ident != nil {
		old = uint64(ident.ReplicaID)
	}
	n.log.Warn("this replica was removed from the cluster: wiping its state to join under a new ID (--rejoin)", "old_replica", old)
	if err := membership.Wipe(n.cfg.DataDir, "raft", "sm"); err != nil {
		return nil, fmt.Errorf("node: wipe removed replica: %w", err)
	}
	return nil, nil
}

// decide gathers the local state (and, for a node without one, what its
// peers say: formation, or whether its ID ran before) and returns
// DecideStart's plan.
func (n *Node) decide(ctx context.Context, ident *membership.Identity, flags membership.StartFlags) (membership.Plan, error) {
	local := membership.LocalState{Identity: ident, HasRaftState: n.hasRaftState(ident), Started: membership.HasStarted(n.cfg.DataDir)}
	switch {
	case local.HasRaftState:
		n.publishFormed(*ident)
	case ident == nil && n.cfg.BootstrapExpect > 0:
		// Cold start from zero: agree with the discovered peers on the
		// initial members, or find that a cluster exists and join it.
		if err := n.form(ctx, &flags); err != nil {
			return membership.Plan{}, err
		}
	case ident == nil && len(n.cfg.InitialMembers) > 1 && n.cfg.Seeds != nil:
		// A static member with an empty data dir: its disk may have been
		// lost. Ask the members it can reach whether its ID has run.
		if id, ok := membership.InitialMemberID(flags); ok {
			local.RanBefore = membership.RanBefore(ctx, n.cfg.Peers, n.cfg.Seeds(), id)
		}
	}
	return membership.DecideStart(local, flags)
}

// adoptIdentity makes the plan's identity this node's. A new one (first
// start, or --rejoin after lost state, whose old state machine goes when
// the plan says so) is written durably before Dragonboat may write anything.
func (n *Node) adoptIdentity(plan membership.Plan) error {
	if plan.WipeStateMachine {
		if err := membership.Wipe(n.cfg.DataDir, "sm"); err != nil {
			return fmt.Errorf("node: wipe replica %d: %w", plan.Replaces, err)
		}
	}
	if plan.NewID {
		if plan.Identity.Origin == membership.OriginJoin {
			plan.Identity.JoinToken = membership.NewJoinToken()
		}
		if err := membership.SaveIdentity(n.cfg.DataDir, plan.Identity); err != nil {
			return fmt.Errorf("node: save identity: %w", err)
		}
	}
	membership.CrashPoint(membership.CrashAfterIdentity)
	n.id = plan.Identity
	n.log = n.log.With("replica", uint64(n.id.ReplicaID))
	return nil
}

// join has a member remove the ID this node replaces (--rejoin), then asks
// a member to admit this replica, as the plan says.
func (n *Node) join(ctx context.Context, plan membership.Plan) error {
	if plan.Replaces != 0 {
		n.log.Warn("rejoining under a new replica ID (--rejoin): the old one goes first", "old_replica", uint64(plan.Replaces))
		if err := membership.RemoveOld(ctx, n.cfg.Peers, n.cfg.Seeds, plan.Replaces, n.log); err != nil {
			return err
		}
	}
	if !plan.CallJoin {
		return nil
	}
	req := membership.JoinRequest{ReplicaID: n.id.ReplicaID, RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr, Token: n.id.JoinToken}
	n.log.Info("joining the cluster", "seeds", n.cfg.Seeds())
	if err := membership.JoinCluster(ctx, n.cfg.Peers, n.cfg.Seeds, req, n.log); err != nil {
		if errors.Is(err, membership.ErrRemoved) {
			// Removed before its first start: mark it, so that
			// --rejoin does what the message says.
			if merr := membership.MarkRemoved(n.cfg.DataDir, n.id.ReplicaID); merr != nil {
				n.log.Error("write removal marker", "err", merr)
			}
		}
		return err
	}
	membership.CrashPoint(membership.CrashAfterJoin)
	return nil
}
