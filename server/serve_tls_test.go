package server

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/internal/freeport"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// startTLS starts a one-node server with the node certificate at
// certFile/keyFile and waits until it is ready.
func startTLS(t *testing.T, p testPKI, certFile, keyFile string, opts func(*Config)) (*Server, *lockedBuffer) {
	t.Helper()
	logs := new(lockedBuffer)
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Node.DataDir = t.TempDir()
	cfg.Node.RaftAddr = freeport.Addr(t)
	cfg.Node.RTT = 10 * time.Millisecond
	cfg.Node.ElectionTicks, cfg.Node.HeartbeatTicks = 10, 1
	cfg.Node.TLS.CertFile, cfg.Node.TLS.KeyFile, cfg.Node.TLS.CAFile = certFile, keyFile, p.ca()
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if opts != nil {
		opts(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Stop(ctx)
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !s.Node().Ready() {
		if time.Now().After(deadline) {
			t.Fatal("node not ready within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s, logs
}

// httpsClient trusts p's CA; cert (optional) is its client certificate.
func httpsClient(p testPKI, cert *tls.Certificate, h2 bool) *http.Client {
	cfg := &tls.Config{RootCAs: p.pool()}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}}
}

func loadPair(t *testing.T, certFile, keyFile string) *tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// With a certificate the API port serves only TLS: HTTP/2 by ALPN and
// HTTP/1.1 work; a plaintext HTTP/1.1 client gets a 400 that says so, an
// h2c (prior knowledge) gRPC client fails at once, a client trusting
// another CA fails verification; the server logs why. Membership calls
// still need the secret (a CA-signed client certificate is not enough
// without --client-cert-auth). A certificate written over the files is
// served without a restart.
func TestAPIServesOnlyTLS(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key")
	c1, k1 := p.issue("node-a")
	copyFile(t, c1, certFile)
	copyFile(t, k1, keyFile)
	s, logs := startTLS(t, p, certFile, keyFile, func(c *Config) { c.JoinSecret = "s3cret"; c.ReloadOnSIGHUP = true })
	addr := s.Addr()
	ctx := context.Background()

	for _, h2 := range []bool{true, false} {
		resp, err := httpsClient(p, nil, h2).Get("https://" + addr + "/healthz")
		if err != nil {
			t.Fatalf("https (h2=%v): %v", h2, err)
		}
		resp.Body.Close()
		want := map[bool]string{true: "HTTP/2.0", false: "HTTP/1.1"}[h2]
		if resp.StatusCode != 200 || resp.Proto != want {
			t.Fatalf("https /healthz: %d over %s, want 200 over %s", resp.StatusCode, resp.Proto, want)
		}
	}
	grpc := kvdv1connect.NewClusterClient(httpsClient(p, nil, true), "https://"+addr, connect.WithGRPC())
	if _, err := grpc.Status(ctx, connect.NewRequest(&kvdv1.StatusRequest{})); err != nil {
		t.Fatalf("gRPC over TLS: %v", err)
	}

	// Plaintext HTTP/1.1.
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("plaintext: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTP request to an HTTPS server") {
		t.Fatalf("plaintext HTTP/1.1 got %d %q", resp.StatusCode, body)
	}

	// h2c with prior knowledge (gRPC over http://): an error, not a hang.
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	plainGRPC := kvdv1connect.NewClusterClient(&http.Client{Transport: &http.Transport{Protocols: h2c}}, "http://"+addr, connect.WithGRPC())
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	start := time.Now()
	_, err = plainGRPC.Status(cctx, connect.NewRequest(&kvdv1.StatusRequest{}))
	cancel()
	if err == nil || connect.CodeOf(err) == connect.CodeDeadlineExceeded || time.Since(start) > 5*time.Second {
		t.Fatalf("h2c gRPC against TLS: err %v after %s, want a prompt failure", err, time.Since(start))
	}
	t.Logf("h2c gRPC client: %v", err)
	// On the wire: SETTINGS, then GOAWAY whose debug data says what to do
	// (gRPC clients print it).
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	raw.Write([]byte(h2cPreface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"))
	answer, _ := io.ReadAll(raw)
	raw.Close()
	if !strings.Contains(string(answer), "serves only TLS") || len(answer) < 9 || answer[3] != 0x4 || answer[9+3] != 0x7 {
		t.Fatalf("h2c preface answered with %q, want SETTINGS and GOAWAY saying TLS only", answer)
	}

	// A client that trusts another CA.
	stranger := newPKI(t)
	_, err = httpsClient(stranger, nil, true).Get("https://" + addr + "/healthz")
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("client with another CA: %v, want an unknown-authority error", err)
	}

	// Membership calls: secret needed, a certificate alone is not enough here.
	sc, sk := p.issue("some-client")
	withCert := kvdv1connect.NewClusterClient(httpsClient(p, loadPair(t, sc, sk), true), "https://"+addr)
	_, err = withCert.Promote(ctx, connect.NewRequest(&kvdv1.PromoteRequest{Id: 99}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("Promote with a client certificate but no secret: %v, want PermissionDenied", err)
	}

	waitLog(t, logs, "TLS handshake failed", "spoke plaintext")

	// Rotation on disk.
	served := func() string {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "node-a" {
		t.Fatalf("serving %q, want node-a", got)
	}
	c2, k2 := p.issue("node-b")
	copyFile(t, c2, certFile)
	copyFile(t, k2, keyFile)
	deadline := time.Now().Add(5 * time.Second)
	for served() != "node-b" {
		if time.Now().After(deadline) {
			t.Fatal("the rotated certificate is not served within 5s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// SIGHUP reloads at once (the server owns the handler while it runs).
	copyFile(t, c1, certFile)
	copyFile(t, k1, keyFile)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "TLS certificate loaded", "why=signal")
	if got := served(); got != "node-a" {
		t.Fatalf("after SIGHUP serving %q, want node-a", got)
	}
}

// With --client-cert-auth a client certificate from the cluster CA is
// required on every connection, and it is enough for membership calls
// (no secret configured).
func TestClientCertAuth(t *testing.T) {
	p := newPKI(t)
	nc, nk := p.issue("node")
	s, logs := startTLS(t, p, nc, nk, func(c *Config) { c.ClientCertAuth = true })
	addr := s.Addr()
	ctx := context.Background()
	status := func(c *http.Client) error {
		_, err := kvdv1connect.NewClusterClient(c, "https://"+addr).Status(ctx, connect.NewRequest(&kvdv1.StatusRequest{}))
		return err
	}

	// Without a certificate: Unauthenticated, saying what to pass, on
	// every path (RPCs, health, metrics).
	for _, grpc := range []bool{false, true} {
		var opts []connect.ClientOption
		if grpc {
			opts = append(opts, connect.WithGRPC())
		}
		_, err := kvdv1connect.NewClusterClient(httpsClient(p, nil, true), "https://"+addr, opts...).Status(ctx, connect.NewRequest(&kvdv1.StatusRequest{}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "requires a client certificate") {
			t.Fatalf("no client certificate (gRPC %v): %v, want Unauthenticated naming the certificate", grpc, err)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := httpsClient(p, nil, false).Get("https://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s without a client certificate: %d, want 401", path, resp.StatusCode)
		}
	}

	other := newPKI(t)
	oc, ok := other.issue("intruder")
	// It trusts our CA (so the server is verified) but presents another CA's certificate.
	if err := status(httpsClient(p, loadPair(t, oc, ok), true)); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
	waitLog(t, logs, "TLS handshake failed", "not signed by this cluster's CA")

	cc, ck := p.issue("operator")
	good := httpsClient(p, loadPair(t, cc, ck), true)
	if err := status(good); err != nil {
		t.Fatalf("a client certificate from the cluster CA: %v", err)
	}
	// Guarded: the certificate passes the guard; the call then fails on
	// its merits (there is no replica 99), not for permission.
	_, err := kvdv1connect.NewClusterClient(good, "https://"+addr).Promote(ctx, connect.NewRequest(&kvdv1.PromoteRequest{Id: 99}))
	if err == nil || connect.CodeOf(err) == connect.CodePermissionDenied {
		t.Fatalf("Promote of an unknown replica with a cluster certificate: %v, want a non-permission error", err)
	}
}

func waitLog(t *testing.T, logs *lockedBuffer, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, ok := logs.String(), true
		for _, w := range want {
			ok = ok && strings.Contains(out, w)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", want, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
