package server

import (
	"context"
	"time"

	"github.com/kvd-project/kvd/membership"
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
	self := func() registry.Instance { return s.instance(apiAddr, raftAddr, formation) }
	go func() {
		defer close(done)
		s.cfg.Registry.Run(ctx, self)
	}()
}

// instance is what the registry shows of this node now.
func (s *Server) instance(apiAddr, raftAddr string, formation *membership.Formation) registry.Instance {
	in := registry.Instance{APIAddr: apiAddr, RaftAddr: raftAddr, Role: "joining", State: membership.StateStarting.String()}
	n := s.running.Load()
	if n == nil {
		// Forming: the pending ID others see in Identify; joining: the
		// ID is not chosen (or not admitted) yet.
		in.ReplicaID = uint64(formation.Get().ID)
		if in.ReplicaID == 0 {
			in.ReplicaID = uint64(s.cfg.Node.ReplicaID)
		}
		return in
	}
	st := n.Status()
	in.ReplicaID, in.Ready, in.State = uint64(st.ReplicaID), st.Ready, st.State.String()
	in.ClusterID = n.ClusterID()
	switch st.Role {
	case membership.RoleVoter:
		in.Role = "voter"
	case membership.RoleObserver:
		in.Role = "observer"
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
