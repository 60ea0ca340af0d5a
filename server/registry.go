package server

import (
	"context"
	"time"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/node"
	"github.com/kvd-project/kvd/registry"
)

// Registry is where the server keeps this node's entry (Consul): from the
// moment the API port is bound until Stop. *registry.Consul implements it.
type Registry interface {
	// Run keeps self()'s entry current until ctx ends.
	Run(ctx context.Context, self func() registry.Instance)
	// Deregister removes the node's entry (it left or was removed).
	Deregister(ctx context.Context, apiAddr string) error
}

// startRegistry runs the registration loop on its own goroutine, owned by
// the server: stopRegistry cancels and waits for it.
func (s *Server) startRegistry(apiAddr, raftAddr string, formation *membership.Formation) {
	if s.cfg.Registry == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stopRegistry = func() { cancel(); <-done }
	before := registry.Instance{APIAddr: apiAddr, RaftAddr: raftAddr, Role: registry.RoleJoining,
		State: membership.StateStarting.String(), ReplicaID: uint64(knownReplicaID(s.cfg.Node))}
	self := func() registry.Instance { return instance(before, formation, s.running.Load()) }
	go func() {
		defer close(done)
		s.cfg.Registry.Run(ctx, self)
	}()
}

// knownReplicaID is this node's replica ID before it starts: the saved
// identity's (a restart), else --node-id (0 when the ID is not chosen
// yet). A removed replica's saved ID is not its own any more: it refuses
// to start, or --rejoin gives it a new one.
func knownReplicaID(cfg node.Config) membership.ReplicaID {
	if ident, err := membership.LoadIdentity(cfg.DataDir); err == nil && ident != nil && !membership.IsRemoved(cfg.DataDir) {
		return ident.ReplicaID
	}
	return cfg.ReplicaID
}

// instance is what the registry shows of this node now: before (what is
// known before the node starts) until n runs (nil until then).
func instance(before registry.Instance, formation *membership.Formation, n *node.Node) registry.Instance {
	in := before
	if n == nil {
		// Forming: the pending ID others see in Identify.
		if id := formation.Get().ID; id != 0 {
			in.ReplicaID = uint64(id)
		}
		return in
	}
	st := n.Status()
	in.ReplicaID, in.Ready, in.State = uint64(st.ReplicaID), st.Ready, st.State.String()
	in.ClusterID = n.ClusterID()
	if st.Role != membership.RoleUnknown {
		in.Role = st.Role.String()
	}
	return in
}

// leaveRegistry stops the registration loop; a node that left the cluster
// or was removed also drops its entry (a plain stop keeps it: Consul's
// check shows the node down until it comes back).
func (s *Server) leaveRegistry(gone bool) {
	if s.stopRegistry == nil {
		return
	}
	s.stopRegistry()
	if !gone {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.cfg.Registry.Deregister(ctx, s.apiAddr); err != nil {
		s.log.Warn("leave the registry", "err", err)
	}
}
