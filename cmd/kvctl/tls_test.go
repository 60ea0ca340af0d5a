package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCerts makes a cluster CA, a node certificate for 127.0.0.1 and a
// client certificate with kvctl certs, and an unrelated CA.
type testCerts struct {
	dir, otherDir string
	ca, otherCA   string
	cert, key     string // the client's
	server        tls.Certificate
	pool          *x509.CertPool
}

func newTestCerts(t *testing.T) *testCerts {
	t.Helper()
	tc := &testCerts{dir: t.TempDir(), otherDir: t.TempDir()}
	for _, args := range [][]string{
		{"certs", "ca", "--out", tc.dir},
		{"certs", "issue", "--ca", tc.dir, "--name", "kvd-1", "--host", "127.0.0.1", "--out", tc.dir},
		{"certs", "issue", "--ca", tc.dir, "--name", "app", "--host", "app", "--out", tc.dir},
		{"certs", "ca", "--out", tc.otherDir},
	} {
		if _, errOut, code := runKvctl(t, "", args...); code != exitOK {
			t.Fatalf("kvctl %v: exit %d, %s", args, code, errOut)
		}
	}
	tc.ca, tc.otherCA = filepath.Join(tc.dir, "ca.crt"), filepath.Join(tc.otherDir, "ca.crt")
	tc.cert, tc.key = filepath.Join(tc.dir, "app.crt"), filepath.Join(tc.dir, "app.key")
	var err error
	if tc.server, err = tls.LoadX509KeyPair(filepath.Join(tc.dir, "kvd-1.crt"), filepath.Join(tc.dir, "kvd-1.key")); err != nil {
		t.Fatal(err)
	}
	tc.pool = x509.NewCertPool()
	tc.pool.AddCert(readCert(t, tc.ca))
	return tc
}

// serverTLS is a node's TLS config; with clientAuth it requires a client
// certificate from the cluster CA (kvd --client-cert-auth).
func (tc *testCerts) serverTLS(clientAuth bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{tc.server}}
	if clientAuth {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, tc.pool
	}
	return cfg
}

// kvctl talks to a node that requires client certificates, over every
// protocol, with the flags or the environment, with host:port or https://
// endpoints.
func TestTLSFlags(t *testing.T) {
	tc := newTestCerts(t)
	f := startFakeKVD(t, tc.serverTLS(true))
	flags := []string{"--cacert", tc.ca, "--cert", tc.cert, "--key", tc.key}
	for _, proto := range []string{"connect", "grpc", "grpcweb"} {
		for _, ep := range []string{f.addr, "https://" + f.addr} {
			args := append(append([]string{"--endpoints", ep, "--protocol", proto}, flags...), "put", "k-"+proto, "v")
			if out, errOut, code := runKvctl(t, "", args...); code != exitOK || !strings.HasPrefix(out, "OK revision=") {
				t.Errorf("kvctl %v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
			}
		}
	}
	t.Setenv("KVCTL_ENDPOINTS", f.addr)
	t.Setenv("KVCTL_CACERT", tc.ca)
	t.Setenv("KVCTL_CERT", tc.cert)
	t.Setenv("KVCTL_KEY", tc.key)
	if out, errOut, code := runKvctl(t, "", "get", "k-grpc"); code != exitOK || out != "v\n" {
		t.Errorf("kvctl get with KVCTL_CACERT, KVCTL_CERT, KVCTL_KEY: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// Each TLS mismatch exits 1 at once with the hint and the files used.
func TestTLSMismatchExits1WithHint(t *testing.T) {
	tc := newTestCerts(t)
	secure, mutual, plain := startFakeKVD(t, tc.serverTLS(false)), startFakeKVD(t, tc.serverTLS(true)), newFakeKVD(t)
	tests := []struct {
		name   string
		args   []string
		stderr []string
	}{
		{"no --cacert for a TLS node", []string{"--endpoints", secure.addr},
			[]string{"the node serves TLS: use https:// endpoints and --cacert", "[no --cacert, --cert or --key given]"}},
		{"no --cacert for a TLS node over gRPC", []string{"--endpoints", secure.addr, "--protocol", "grpc"},
			[]string{"the node serves TLS: use https:// endpoints and --cacert"}},
		{"--cacert of another CA", []string{"--endpoints", secure.addr, "--cacert", tc.otherCA},
			[]string{"the node's certificate is not signed by a CA in --cacert", "[--cacert " + tc.otherCA + "]"}},
		{"https without --cacert", []string{"--endpoints", "https://" + secure.addr},
			[]string{"not signed by a CA in --cacert", "no --cacert, --cert or --key given"}},
		{"--cacert for a plaintext node", []string{"--endpoints", plain.addr, "--cacert", tc.ca},
			[]string{"the node does not serve TLS: use http:// endpoints"}},
		{"no --cert for a node that requires one", []string{"--endpoints", mutual.addr, "--cacert", tc.ca},
			[]string{"the node requires a client certificate: pass --cert and --key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			out, errOut, code := runKvctl(t, "", append(tt.args, "--timeout", "20s", "put", "k", "v")...)
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %v: a TLS mismatch must fail at once", took)
			}
			if code != exitGeneric || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1", code, out, errOut)
			}
			for _, w := range tt.stderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not say %q", errOut, w)
				}
			}
		})
	}
}

// TLS flags that cannot serve are bad arguments (exit 5), found before
// any node is asked.
func TestTLSFlagErrors(t *testing.T) {
	tc := newTestCerts(t)
	missing := filepath.Join(t.TempDir(), "missing.crt")
	garbage := filepath.Join(t.TempDir(), "garbage.crt")
	if err := os.WriteFile(garbage, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	ep := "--endpoints=" + downAddr(t)
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"missing CA file", []string{ep, "--cacert", missing}, "invalid TLS flags: client: CA file: open " + missing},
		{"CA file without a certificate", []string{ep, "--cacert", garbage}, "CA file " + garbage + " holds no PEM certificate"},
		{"node certificate as CA", []string{ep, "--cacert", filepath.Join(tc.dir, "kvd-1.crt")}, "which is not a CA certificate"},
		{"--cert without --key", []string{ep, "--cacert", tc.ca, "--cert", tc.cert}, "needs its key too"},
		{"--key without --cert", []string{ep, "--cacert", tc.ca, "--key", tc.key}, "needs its certificate too"},
		{"--key of another certificate", []string{ep, "--cacert", tc.ca, "--cert", tc.cert,
			"--key", filepath.Join(tc.dir, "kvd-1.key")}, "does not fit certificate " + tc.cert},
		{"--cacert with an http:// endpoint", []string{"--endpoints", "http://" + downAddr(t), "--cacert", tc.ca},
			"Config.TLS is set but endpoint"},
		{"mixed schemes", []string{"--endpoints", "http://127.0.0.1:1,https://127.0.0.1:2"}, "mixes http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runKvctl(t, "", append(tt.args, "get", "k")...)
			if code != exitInvalid || out != "" || !strings.Contains(errOut, tt.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errOut, exitInvalid, tt.stderr)
			}
		})
	}
}
