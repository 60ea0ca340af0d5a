package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/certs"
)

// pki is a cluster CA with one certificate issued by it (good for
// 127.0.0.1 as server and as client), and a second, unrelated CA with its
// own certificate.
type pki struct {
	dir                          string
	ca, cert, key                string // the cluster's files
	otherCA, otherCert, otherKey string // the unrelated CA's
	pool                         *x509.CertPool
	serverCert                   tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir, other := t.TempDir(), t.TempDir()
	for _, d := range []string{dir, other} {
		if err := certs.CreateCA(d, certs.CAOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := certs.Issue(d, d, certs.IssueOptions{Name: "n1", Hosts: []string{"127.0.0.1"}}); err != nil {
			t.Fatal(err)
		}
	}
	p := &pki{
		dir: dir, ca: filepath.Join(dir, "ca.crt"), cert: filepath.Join(dir, "n1.crt"), key: filepath.Join(dir, "n1.key"),
		otherCA: filepath.Join(other, "ca.crt"), otherCert: filepath.Join(other, "n1.crt"), otherKey: filepath.Join(other, "n1.key"),
	}
	var err error
	if p.serverCert, err = tls.LoadX509KeyPair(p.cert, p.key); err != nil {
		t.Fatal(err)
	}
	if p.pool, err = loadCAFile(p.ca); err != nil {
		t.Fatal(err)
	}
	return p
}

// server is the TLS config of a node with the cluster's certificate; with
// clientAuth it requires a client certificate from the cluster CA.
func (p *pki) server(clientAuth bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{p.serverCert}}
	if clientAuth {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = p.pool
	}
	return cfg
}

// clientTLS is TLSFromFiles that must succeed.
func clientTLS(t *testing.T, ca, cert, key string) *tls.Config {
	t.Helper()
	cfg, err := TLSFromFiles(ca, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Every protocol, over the stream (the default) and unary, with leader
// preference, works over mutual TLS with bare host:port endpoints; gRPC and
// the stream negotiate HTTP/2 by ALPN, unary Connect and gRPC-Web (always
// unary) stay on HTTP/1.1.
func TestTLSEveryProtocol(t *testing.T) {
	p := newPKI(t)
	tlsCfg := clientTLS(t, p.ca, p.cert, p.key)
	for _, proto := range []Protocol{ProtocolConnect, ProtocolGRPC, ProtocolGRPCWeb} {
		for _, unary := range []bool{false, true} {
			// gRPC-Web cannot stream both ways: it is unary either way.
			stream := !unary && proto != ProtocolGRPCWeb
			t.Run(fmt.Sprintf("%s/unary=%t", proto, unary), func(t *testing.T) {
				follower := startFakeNode(t, 2, p.server(true))
				leader := startFakeNode(t, 1, p.server(true)) // fakeNode 1 says it is the leader
				c, err := New(Config{Endpoints: []string{follower.addr, leader.addr}, TLS: tlsCfg,
					Protocol: proto, Unary: unary, PreferLeader: true})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
					t.Fatalf("put over TLS: %v", err)
				}
				kv, err := c.Get(ctx, []byte("k"))
				if err != nil || string(kv.Value) != "v" {
					t.Fatalf("get over TLS = %v, %v", kv, err)
				}
				if _, err := c.Members(ctx); err != nil {
					t.Fatalf("members over TLS: %v", err)
				}
				if got := c.CurrentEndpoint(); got != leader.addr {
					t.Errorf("PreferLeader: current endpoint %s, want the leader %s", got, leader.addr)
				}
				want := "HTTP/1.1"
				if proto == ProtocolGRPC || stream {
					want = "HTTP/2.0"
				}
				if got, want := leader.Calls("Stream"), map[bool]int{true: 1}[stream]; got != want {
					t.Errorf("%d streams opened, want %d", got, want)
				}
				leader.mu.Lock()
				defer leader.mu.Unlock()
				if len(leader.protos) != 1 || !leader.protos[want] {
					t.Errorf("the node served %v, want only %s", leader.protos, want)
				}
			})
		}
	}
}

// https:// endpoints without Config.TLS verify the node against the system's
// roots, which do not hold a test CA.
func TestHTTPSWithoutTLSUsesSystemRoots(t *testing.T) {
	p := newPKI(t)
	n := startFakeNode(t, 1, p.server(false))
	c, err := New(Config{Endpoints: []string{"https://" + n.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Get(context.Background(), []byte("k"))
	if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "not signed by a CA in --cacert") {
		t.Fatalf("get = %v, want an untrusted-CA ErrTLS", err)
	}
}

// A watch whose TLS settings miss the node's ends at once with ErrTLS, as a
// get does, instead of retrying forever.
func TestWatchEndsOnTLSMismatch(t *testing.T) {
	p := newPKI(t)
	n := startFakeNode(t, 1, p.server(false))
	c, err := New(Config{Endpoints: []string{"https://" + n.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for u := range c.Watch(ctx, []byte("k")) {
		if u.Err == nil {
			t.Fatalf("watch update %+v from a node the client cannot trust", u)
		}
		if !errors.Is(u.Err, ErrTLS) {
			t.Fatalf("watch ended with %v, want ErrTLS", u.Err)
		}
		return
	}
	t.Fatal("watch closed without a final error")
}

// Each way the client's TLS settings can miss the node's fails the first
// attempt with a hint, never retried, never a hang, never "unavailable" and
// never an unknown outcome, whatever the protocol.
func TestTLSMisconfiguration(t *testing.T) {
	p := newPKI(t)
	good := clientTLS(t, p.ca, p.cert, p.key)
	tests := []struct {
		name      string
		serverTLS *tls.Config // nil: plaintext
		clientTLS *tls.Config
		ep        func(addr string) string
		want      string
	}{
		{"untrusted CA", p.server(false), clientTLS(t, p.otherCA, "", ""), nil,
			"the node's certificate is not signed by a CA in --cacert"},
		{"plaintext client, TLS node", p.server(false), nil, nil,
			"the node serves TLS: use https:// endpoints and --cacert"},
		{"TLS client, plaintext node", nil, good, nil,
			"the node does not serve TLS: use http:// endpoints"},
		{"no client certificate", p.server(true), clientTLS(t, p.ca, "", ""), nil,
			"the node requires a client certificate: pass --cert and --key"},
		{"client certificate of another CA", p.server(true), clientTLS(t, p.ca, p.otherCert, p.otherKey), nil,
			"the node refused the client certificate"},
		{"name not in the certificate", p.server(false), good,
			func(addr string) string { _, port, _ := net.SplitHostPort(addr); return "localhost:" + port },
			`the node's certificate is not valid for "localhost": use an endpoint name the certificate lists (127.0.0.1)`},
	}
	for _, tt := range tests {
		for _, mode := range []struct {
			proto Protocol
			unary bool
		}{{ProtocolConnect, true}, {ProtocolGRPC, true}, {ProtocolGRPCWeb, false}, {ProtocolConnect, false}, {ProtocolGRPC, false}} {
			t.Run(fmt.Sprintf("%s/%s/unary=%t", tt.name, mode.proto, mode.unary), func(t *testing.T) {
				n := startFakeNode(t, 1, tt.serverTLS)
				ep := n.addr
				if tt.ep != nil {
					ep = tt.ep(n.addr)
				}
				c, err := New(Config{Endpoints: []string{ep}, TLS: tt.clientTLS, Protocol: mode.proto,
					Unary: mode.unary, BackoffBase: time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				start := time.Now()
				_, err = c.Put(ctx, []byte("k"), []byte("v"))
				if took := time.Since(start); took > 5*time.Second {
					t.Errorf("put took %v: it should fail at once", took)
				}
				var ce *Error
				switch {
				case !errors.Is(err, ErrTLS) || !errors.As(err, &ce):
					t.Fatalf("put = %v, want ErrTLS", err)
				case !strings.Contains(err.Error(), "TLS at ") || !strings.Contains(err.Error(), tt.want):
					t.Errorf("put = %q, want it to say %q", err, tt.want)
				case ce.Attempts != 1:
					t.Errorf("%d attempts, want 1: a TLS mismatch is not retried", ce.Attempts)
				case IsTemporary(err), errors.Is(err, ErrUnavailable), OutcomeUnknown(err):
					t.Errorf("put = %v: temporary %t, unavailable %t, outcome unknown %t; want none",
						err, IsTemporary(err), errors.Is(err, ErrUnavailable), OutcomeUnknown(err))
				}
				if calls := n.Calls("Put"); calls != 0 {
					t.Errorf("the node served %d puts", calls)
				}
			})
		}
	}
}

// A call that meets a node set up without TLS fails with the hint, and the
// client moves on: the next call goes to the next node, which works.
func TestTLSMismatchMovesToNextEndpoint(t *testing.T) {
	p := newPKI(t)
	plain := startFakeNode(t, 2, nil)
	secure := startFakeNode(t, 1, p.server(false))
	c, err := New(Config{Endpoints: []string{plain.addr, secure.addr}, TLS: clientTLS(t, p.ca, "", "")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	// Gets: a read goes to the current endpoint (a write would go to the
	// leader, here the TLS node, and never meet the plain one).
	if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, ErrTLS) {
		t.Fatalf("first get = %v, want ErrTLS", err)
	}
	if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second get = %v, want it served (not found) by %s", err, secure.addr)
	}
}

func TestTLSFromFiles(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	write := func(name, data string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	garbage := write("garbage.pem", "not a certificate\n")
	missing := filepath.Join(dir, "missing.crt")
	tests := []struct {
		name            string
		ca, cert, key   string
		want            []string // parts of the error; nil = valid
		wantCert, roots bool
	}{
		{"CA only", p.ca, "", "", nil, false, true},
		{"CA and client certificate", p.ca, p.cert, p.key, nil, true, true},
		{"client certificate, system roots", "", p.cert, p.key, nil, true, false},
		{"nothing", "", "", "", nil, false, false},
		{"missing CA file", missing, "", "", []string{"CA file", missing, "no such file"}, false, false},
		{"CA file without PEM", garbage, "", "", []string{"CA file " + garbage + " holds no PEM certificate"}, false, false},
		{"CA file is a key", filepath.Join(p.dir, "ca.key"), "", "", []string{"holds a private key"}, false, false},
		{"CA file is a node certificate", p.cert, "", "", []string{"CA file " + p.cert, `"n1", which is not a CA certificate`}, false, false},
		{"certificate without key", p.ca, p.cert, "", []string{"client certificate (" + p.cert + ") needs its key"}, false, false},
		{"key without certificate", p.ca, "", p.key, []string{"client key (" + p.key + ") needs its certificate"}, false, false},
		{"key of another certificate", p.ca, p.cert, p.otherKey,
			[]string{"client key " + p.otherKey + " does not fit certificate " + p.cert}, false, false},
		{"certificate and key swapped", p.ca, p.key, p.cert, []string{"client certificate " + p.key + " holds no PEM certificate"}, false, false},
		{"key file is a certificate", p.ca, p.cert, write("cert-as-key.pem", read(p.cert)),
			[]string{"holds no PEM private key"}, false, false},
		{"missing key", p.ca, p.cert, missing, []string{"client key", missing, "no such file"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := TLSFromFiles(tt.ca, tt.cert, tt.key)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("TLSFromFiles = %v", err)
				}
				if got := len(cfg.Certificates) == 1; got != tt.wantCert {
					t.Errorf("client certificate loaded: %t, want %t", got, tt.wantCert)
				}
				if got := cfg.RootCAs != nil; got != tt.roots {
					t.Errorf("own roots: %t, want %t", got, tt.roots)
				}
				return
			}
			if err == nil {
				t.Fatalf("TLSFromFiles = nil, want an error with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("TLSFromFiles = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// textError stands for tls's unexported alert type: only its text counts.
type textError string

func (e textError) Error() string { return string(e) }

func TestTLSProblem(t *testing.T) {
	wrap := func(err error) error { return connect.NewError(connect.CodeUnavailable, fmt.Errorf("post: %w", err)) }
	remote := func(alert string) error { return &net.OpError{Op: "remote error", Err: textError(alert)} }
	tests := []struct {
		name string
		err  error
		want string // part of the hint; "" = not a TLS problem
	}{
		{"nil", nil, ""},
		{"EOF", wrap(io.EOF), ""},
		{"refused", wrap(&net.OpError{Op: "dial", Err: errors.New("connection refused")}), ""},
		{"server error", connect.NewWireError(connect.CodeUnavailable, errors.New("no leader")), ""},
		{"other remote alert", wrap(remote("tls: internal error")), ""},
		{"unknown CA", wrap(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}),
			"not signed by a CA in --cacert"},
		{"wrong name", wrap(x509.HostnameError{Certificate: &x509.Certificate{DNSNames: []string{"kvd-1"},
			IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}, Host: "kvd-2"}),
			`not valid for "kvd-2": use an endpoint name the certificate lists (kvd-1, 10.0.0.1)`},
		{"expired", wrap(x509.CertificateInvalidError{Reason: x509.Expired}), "has expired or is not valid yet"},
		{"not TLS", wrap(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}),
			"the node does not serve TLS"},
		{"HTTP answer to TLS", wrap(errors.New("http: server gave HTTP response to HTTPS client")),
			"the node does not serve TLS"},
		{"certificate required", wrap(remote("tls: certificate required")), "pass --cert and --key"},
		{"bad certificate", wrap(remote("tls: bad certificate")), "the node refused the client certificate"},
		{"probe: serves TLS", &tlsMismatch{hint: errServesTLS, err: wrap(io.EOF)}, "the node serves TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tlsProblem(tt.err)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("tlsProblem(%v) = %q, want %q", tt.err, got, tt.want)
			}
			if want := tt.want != ""; (classify(tt.err, nil) == failTLS) != want {
				t.Errorf("classify(%v) = %v, want failTLS: %t", tt.err, classify(tt.err, nil), want)
			}
		})
	}
}
