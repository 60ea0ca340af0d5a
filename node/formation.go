package node

import (
	"context"
	"fmt"

	"github.com/kvd-project/kvd/membership"
)

// form runs the --bootstrap-expect agreement and turns its outcome into
// start-up flags: the agreed initial members, or a join.
func (n *Node) form(ctx context.Context, flags *membership.StartFlags) error {
	id, err := membership.PendingID(n.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	self := membership.Peer{ID: id, RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr}
	f := n.cfg.Formation
	if f == nil {
		f = new(membership.Formation)
	}
	d, err := membership.Form(ctx, n.cfg.Peers, n.cfg.Seeds, self, n.cfg.BootstrapExpect, f, n.log)
	if err != nil {
		return err
	}
	flags.ReplicaID = id
	if d.Action == membership.FormBootstrap {
		flags.InitialMembers = map[membership.ReplicaID]string{}
		for _, m := range d.Members {
			flags.InitialMembers[m.ID] = m.RaftAddr
		}
		flags.Join = false
		n.log.Info("bootstrapping the agreed initial members", "members", membership.FormatMembers(flags.InitialMembers))
		return nil
	}
	n.log.Info("a cluster exists: joining it", "reason", d.Reason)
	return nil
}

// publishFormed tells peers forming a cluster that this node runs one.
func (n *Node) publishFormed(id membership.Identity) {
	if n.cfg.Formation == nil {
		return
	}
	pi := membership.PeerIdentity{Peer: membership.Peer{ID: id.ReplicaID, RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr}, Formed: true}
	for mid, addr := range id.InitialMembers {
		pi.Members = append(pi.Members, membership.Peer{ID: mid, RaftAddr: addr})
	}
	n.cfg.Formation.Set(pi)
}
