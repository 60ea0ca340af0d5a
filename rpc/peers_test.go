package rpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/certs"
	"github.com/kvd-project/kvd/membership"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

type statusOnly struct {
	kvdv1connect.UnimplementedClusterHandler
	mu     sync.Mutex
	client string // CN of the caller's verified certificate
}

func (s *statusOnly) Status(ctx context.Context, _ *connect.Request[kvdv1.StatusRequest]) (*connect.Response[kvdv1.StatusResponse], error) {
	return connect.NewResponse(&kvdv1.StatusResponse{Id: 7}), nil
}

// pki makes a CA and one certificate for 127.0.0.1; it returns the CA pool
// and the certificate.
func pki(t *testing.T, name string) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	dir := t.TempDir()
	if err := certs.CreateCA(dir, certs.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := certs.Issue(dir, dir, certs.IssueOptions{Name: name, Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, certs.CACertFile))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return pool, pair
}

// With a TLS config, peer calls (Status here; Identify, View and Join use
// the same client and scheme) are https, present the node's certificate,
// and verify the peer against the CA alone.
func TestPeerDialerUsesTLSWithClientCertificate(t *testing.T) {
	pool, serverCert := pki(t, "peer")
	// The server and the dialing node share the CA: issue the node's
	// certificate from the same pool by reusing the server pair.
	h := &statusOnly{}
	mux := http.NewServeMux()
	path, handler := kvdv1connect.NewClusterHandler(h)
	mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			h.mu.Lock()
			h.client = r.TLS.VerifiedChains[0][0].Subject.CommonName
			h.mu.Unlock()
		}
		handler.ServeHTTP(w, r)
	}))
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")

	d := NewPeerDialer("", &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{serverCert}})
	st, err := d.Status(context.Background(), addr)
	if err != nil {
		t.Fatalf("Status over TLS: %v", err)
	}
	h.mu.Lock()
	client := h.client
	h.mu.Unlock()
	if st.ID != 7 || client != "peer" {
		t.Fatalf("status id %d, client certificate %q; want 7 and peer", st.ID, client)
	}

	// A peer whose certificate comes from another CA is not trusted.
	otherPool, otherCert := pki(t, "peer")
	d = NewPeerDialer("", &tls.Config{RootCAs: otherPool, Certificates: []tls.Certificate{otherCert}})
	_, err = d.Status(context.Background(), addr)
	if err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("Status to a peer of another CA: %v, want an unknown-authority error", err)
	}

	// Join treats either certificate failure as a definite refusal (the
	// joiner stops and says why instead of retrying forever).
	err = d.Join(context.Background(), addr, membership.JoinRequest{ReplicaID: 5, RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2"})
	if !errors.Is(err, membership.ErrJoinRefused) || !strings.Contains(err.Error(), "not signed by this node's --trusted-ca-file") {
		t.Fatalf("Join to a member of another CA: %v, want ErrJoinRefused naming the CA", err)
	}
	d = NewPeerDialer("", &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{otherCert}})
	err = d.Join(context.Background(), addr, membership.JoinRequest{ReplicaID: 5, RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2"})
	if !errors.Is(err, membership.ErrJoinRefused) || !strings.Contains(err.Error(), "refused this node's certificate") {
		t.Fatalf("Join with a certificate of another CA: %v, want ErrJoinRefused naming our certificate", err)
	}

	// Without TLS the dialer speaks plaintext and fails against it.
	d = NewPeerDialer("", nil)
	if _, err := d.Status(context.Background(), addr); err == nil {
		t.Fatal("a plaintext peer call to a TLS server succeeded")
	}
}
