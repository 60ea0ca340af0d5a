package rpc

import (
	"context"
	"net/http"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/membership"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

type bootstrapServer struct{ f *membership.Formation }

// MountBootstrap serves kvd.v1.Bootstrap from the formation state; it works
// before the node has started.
func MountBootstrap(mux *http.ServeMux, f *membership.Formation) {
	mux.Handle(kvdv1connect.NewBootstrapHandler(&bootstrapServer{f: f}))
}

func peerProto(p membership.Peer) *kvdv1.Peer {
	return &kvdv1.Peer{Id: uint64(p.ID), RaftAddr: p.RaftAddr, ApiAddr: p.APIAddr}
}

func peerFromProto(p *kvdv1.Peer) membership.Peer {
	return membership.Peer{ID: membership.ReplicaID(p.GetId()), RaftAddr: p.GetRaftAddr(), APIAddr: p.GetApiAddr()}
}

func (b *bootstrapServer) Identify(context.Context, *connect.Request[kvdv1.IdentifyRequest]) (*connect.Response[kvdv1.IdentifyResponse], error) {
	id := b.f.Get()
	out := &kvdv1.IdentifyResponse{Self: peerProto(id.Peer), Formed: id.Formed}
	for _, m := range id.Members {
		out.Members = append(out.Members, peerProto(m))
	}
	for _, m := range id.Proposal {
		out.Proposal = append(out.Proposal, peerProto(m))
	}
	return connect.NewResponse(out), nil
}

func (d *peerDialer) Identify(ctx context.Context, apiAddr string) (membership.PeerIdentity, error) {
	c := kvdv1connect.NewBootstrapClient(d.http, d.scheme+apiAddr)
	resp, err := c.Identify(ctx, connect.NewRequest(&kvdv1.IdentifyRequest{}))
	if err != nil {
		return membership.PeerIdentity{}, err
	}
	m := resp.Msg
	out := membership.PeerIdentity{Peer: peerFromProto(m.Self), Formed: m.Formed}
	for _, p := range m.Members {
		out.Members = append(out.Members, peerFromProto(p))
	}
	for _, p := range m.Proposal {
		out.Proposal = append(out.Proposal, peerFromProto(p))
	}
	return out, nil
}
