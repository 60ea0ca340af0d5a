package rpc

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/membership"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// peerDialer implements membership.PeerDialer with Connect clients.
type peerDialer struct {
	http   *http.Client
	scheme string      // "http://" or "https://"
	tls    *tls.Config // nil = plaintext
	secret string
}

// NewPeerDialer returns the PeerDialer nodes use to call each other's API
// (join, status probes, views, removal checks, Identify during formation);
// it sends the join secret (if any) on every call. With tlsConfig (the
// cluster CA as the only root, the node's own certificate as client
// certificate) every call is https and verifies the peer; seeds stay
// host:port.
func NewPeerDialer(secret string, tlsConfig *tls.Config) membership.PeerDialer {
	t := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute, TLSHandshakeTimeout: 5 * time.Second}
	scheme := "http://"
	if tlsConfig != nil {
		t.TLSClientConfig = tlsConfig
		t.ForceAttemptHTTP2 = true
		scheme = "https://"
	}
	return &peerDialer{
		http:   &http.Client{Timeout: 15 * time.Second, Transport: t},
		scheme: scheme,
		tls:    tlsConfig,
		secret: secret,
	}
}

// CloseIdleConnections closes the connections to peers that are not in
// use (the server calls it when it stops).
func (d *peerDialer) CloseIdleConnections() { d.http.CloseIdleConnections() }

func (d *peerDialer) client(apiAddr string) kvdv1connect.ClusterClient {
	return kvdv1connect.NewClusterClient(d.http, d.scheme+apiAddr,
		connect.WithInterceptors(secretSender(d.secret)))
}

func (d *peerDialer) Status(ctx context.Context, apiAddr string) (membership.PeerStatus, error) {
	resp, err := d.client(apiAddr).Status(ctx, connect.NewRequest(&kvdv1.StatusRequest{}))
	if err != nil {
		return membership.PeerStatus{}, err
	}
	m := resp.Msg
	return membership.PeerStatus{
		ID: membership.ReplicaID(m.Id), Role: roleFromProto(m.Role), LeaderID: membership.ReplicaID(m.LeaderId),
		Applied: m.AppliedIndex, Ready: m.Ready, State: membership.ParseState(m.State), Reason: m.Reason,
	}, nil
}

func (d *peerDialer) View(ctx context.Context, apiAddr string) (membership.View, error) {
	resp, err := d.client(apiAddr).Members(ctx, connect.NewRequest(&kvdv1.MembersRequest{}))
	if err != nil {
		return membership.View{}, err
	}
	v := membership.View{LeaderID: membership.ReplicaID(resp.Msg.LeaderId), ConfigChangeID: resp.Msg.ConfigChangeId,
		Removed: map[membership.ReplicaID]bool{}}
	for _, id := range resp.Msg.RemovedIds {
		v.Removed[membership.ReplicaID(id)] = true
	}
	for _, m := range resp.Msg.Members {
		v.Members = append(v.Members, membership.MemberState{
			ID: membership.ReplicaID(m.Id), Role: roleFromProto(m.Role), Applied: m.AppliedIndex,
			Ready: m.Ready, APIAddr: m.ApiAddr, DownFor: time.Duration(m.DownForMs) * time.Millisecond,
		})
	}
	return v, nil
}

func (d *peerDialer) Join(ctx context.Context, apiAddr string, req membership.JoinRequest) error {
	_, err := d.client(apiAddr).Join(ctx, connect.NewRequest(&kvdv1.JoinRequest{
		ReplicaId: uint64(req.ReplicaID), RaftAddr: req.RaftAddr, ApiAddr: req.APIAddr, JoinToken: req.Token,
	}))
	switch connect.CodeOf(err) {
	case connect.CodeFailedPrecondition:
		// Refused; when because the ID was removed, say so: the joiner
		// then marks itself removed, so that --rejoin works.
		if v, verr := d.View(ctx, apiAddr); verr == nil && v.Removed[req.ReplicaID] {
			return fmt.Errorf("%w: %w: %v", membership.ErrJoinRefused, membership.ErrRemoved, err)
		}
		return fmt.Errorf("%w: %v", membership.ErrJoinRefused, err)
	case connect.CodePermissionDenied, connect.CodeInvalidArgument, connect.CodeAlreadyExists:
		return fmt.Errorf("%w: %v", membership.ErrJoinRefused, err)
	}
	if refused := d.certificateRefusal(ctx, apiAddr, err); refused != nil {
		return refused
	}
	return err
}

func (d *peerDialer) Remove(ctx context.Context, apiAddr string, id membership.ReplicaID) error {
	_, err := d.client(apiAddr).Remove(ctx, connect.NewRequest(&kvdv1.RemoveRequest{Id: uint64(id)}))
	switch connect.CodeOf(err) {
	case connect.CodeNotFound:
		return nil // not a member (any more)
	case connect.CodePermissionDenied, connect.CodeInvalidArgument:
		return fmt.Errorf("%w: %v", membership.ErrJoinRefused, err)
	}
	if refused := d.certificateRefusal(ctx, apiAddr, err); refused != nil {
		return refused
	}
	return err
}
