package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvd-project/kvd/certs"
	"github.com/kvd-project/kvd/node"
)

// testPKI is a CA in dir with certificates issued into the same dir.
type testPKI struct {
	t   *testing.T
	dir string
}

func newPKI(t *testing.T) testPKI {
	t.Helper()
	p := testPKI{t: t, dir: t.TempDir()}
	if err := certs.CreateCA(p.dir, certs.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p testPKI) ca() string { return filepath.Join(p.dir, certs.CACertFile) }

// issue returns the cert and key paths of a new certificate for 127.0.0.1.
func (p testPKI) issue(name string) (string, string) {
	p.t.Helper()
	if err := certs.Issue(p.dir, p.dir, certs.IssueOptions{Name: name, Hosts: []string{"127.0.0.1", "localhost"}}); err != nil {
		p.t.Fatal(err)
	}
	return filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
}

func (p testPKI) files(name string) node.TLSFiles {
	c, k := p.issue(name)
	return node.TLSFiles{CertFile: c, KeyFile: k, CAFile: p.ca()}
}

func (p testPKI) pool() *x509.CertPool {
	p.t.Helper()
	b, err := os.ReadFile(p.ca())
	if err != nil {
		p.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return pool
}

// Every incomplete combination of the TLS flags is refused, naming what to
// add; complete ones and none at all are accepted.
func TestTLSFlagsAreValidated(t *testing.T) {
	p := newPKI(t)
	good := p.files("n1")
	other := newPKI(t)
	cases := []struct {
		name           string
		files          node.TLSFiles
		clientCertAuth bool
		want           string // "" = accepted
	}{
		{"none", node.TLSFiles{}, false, ""},
		{"all", good, false, ""},
		{"all with client-cert-auth", good, true, ""},
		{"cert without key", node.TLSFiles{CertFile: good.CertFile, CAFile: good.CAFile}, false, "--cert-file and --key-file go together"},
		{"key without cert", node.TLSFiles{KeyFile: good.KeyFile, CAFile: good.CAFile}, false, "--cert-file and --key-file go together"},
		{"no CA", node.TLSFiles{CertFile: good.CertFile, KeyFile: good.KeyFile}, false, "--cert-file needs --trusted-ca-file"},
		{"CA only", node.TLSFiles{CAFile: good.CAFile}, false, "--trusted-ca-file needs --cert-file and --key-file"},
		{"client-cert-auth alone", node.TLSFiles{}, true, "--client-cert-auth needs --trusted-ca-file"},
		{"missing cert file", node.TLSFiles{CertFile: good.CertFile + ".nope", KeyFile: good.KeyFile, CAFile: good.CAFile}, false, "load the certificate --cert-file"},
		{"key of another cert", node.TLSFiles{CertFile: good.CertFile, KeyFile: other.files("x").KeyFile, CAFile: good.CAFile}, false, "must be a PEM certificate and its private key"},
		{"CA file not PEM", node.TLSFiles{CertFile: good.CertFile, KeyFile: good.KeyFile, CAFile: good.KeyFile + "x"}, false, "--trusted-ca-file"},
		{"CA file is a key", node.TLSFiles{CertFile: good.CertFile, KeyFile: good.KeyFile, CAFile: good.KeyFile}, false, "holds no PEM certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newTLS(tc.files, tc.clientCertAuth, slog.New(slog.DiscardHandler))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted; want an error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestCheckMembershipGuard(t *testing.T) {
	cases := []struct {
		name               string
		addrs              []string
		secret, certs, opt bool
		wantErr, wantWarn  bool
	}{
		{"loopback, nothing: warn", []string{"127.0.0.1:7070", "127.0.0.1:7170"}, false, false, false, false, true},
		{"localhost, nothing: warn", []string{"localhost:7070", "[::1]:7170"}, false, false, false, false, true},
		{"wildcard API, nothing: refuse", []string{"0.0.0.0:7070", "127.0.0.1:7170"}, false, false, false, true, false},
		{"empty host, nothing: refuse", []string{":7070", "127.0.0.1:7170"}, false, false, false, true, false},
		{"raft on a LAN address, nothing: refuse", []string{"127.0.0.1:7070", "10.0.0.5:7170"}, false, false, false, true, false},
		{"hostname, nothing: refuse", []string{"kvd-1:7070"}, false, false, false, true, false},
		{"wildcard with secret", []string{"0.0.0.0:7070", "0.0.0.0:7170"}, true, false, false, false, false},
		{"wildcard with client certs", []string{"0.0.0.0:7070", "0.0.0.0:7170"}, false, true, false, false, false},
		{"wildcard, opted out: warn", []string{"0.0.0.0:7070", "0.0.0.0:7170"}, false, false, true, false, true},
		{"loopback with secret: quiet", []string{"127.0.0.1:7070"}, true, false, false, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			warn, err := CheckMembershipGuard(tc.addrs, tc.secret, tc.certs, tc.opt)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				for _, fix := range []string{"--join-secret", "--client-cert-auth", "--insecure-open-membership"} {
					if !strings.Contains(err.Error(), fix) {
						t.Errorf("error %q does not name %s", err, fix)
					}
				}
			}
			if (warn != "") != tc.wantWarn {
				t.Fatalf("warning = %q, want one: %v", warn, tc.wantWarn)
			}
		})
	}
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".tmp", to); err != nil {
		t.Fatal(err)
	}
}

func serial(c *tls.Certificate) string { return c.Leaf.SerialNumber.String() }

// A certificate written over the files is served after at most one check
// interval; a broken pair keeps the previous certificate and logs an error;
// reload (SIGHUP) reads the files at once.
func TestCertReloaderPicksUpRotatedFiles(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key")
	c1, k1 := p.issue("one")
	c2, k2 := p.issue("two")
	c3, k3 := p.issue("three")
	copyFile(t, c1, certFile)
	copyFile(t, k1, keyFile)
	var logs lockedBuffer
	now := time.Unix(1000, 0)
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: slog.New(slog.NewTextHandler(&logs, nil)),
		now: func() time.Time { return now }}
	if err := r.load(); err != nil {
		t.Fatal(err)
	}
	first := serial(r.current())

	copyFile(t, c2, certFile)
	copyFile(t, k2, keyFile)
	now = now.Add(certCheckInterval / 2)
	if got := serial(r.current()); got != first {
		t.Fatal("the files were looked at again within the check interval")
	}
	now = now.Add(certCheckInterval)
	second := serial(r.current())
	if second == first {
		t.Fatal("the rotated certificate is not served after the check interval")
	}

	// A broken pair (new certificate, old key) keeps the second one.
	copyFile(t, c3, certFile)
	now = now.Add(certCheckInterval)
	if got := serial(r.current()); got != second {
		t.Fatal("a mismatched pair replaced the served certificate")
	}
	if !strings.Contains(logs.String(), "TLS certificate not reloaded") {
		t.Fatalf("no error logged for the broken pair:\n%s", logs.String())
	}
	// Its key arrives: served at the next check.
	copyFile(t, k3, keyFile)
	now = now.Add(certCheckInterval)
	third := serial(r.current())
	if third == second || third == first {
		t.Fatal("the repaired pair is not served")
	}

	// reload does not wait for the interval.
	copyFile(t, c1, certFile)
	copyFile(t, k1, keyFile)
	r.reload()
	if got := serial(r.current()); got != first {
		t.Fatal("reload did not read the files")
	}
}

func TestHandshakeLogIsRateLimitedWithHints(t *testing.T) {
	var logs lockedBuffer
	now := time.Unix(1000, 0)
	h := &handshakeLog{log: slog.New(slog.NewTextHandler(&logs, nil)), now: func() time.Time { return now }}
	h.Write([]byte("http: TLS handshake error from 127.0.0.1:5555: tls: first record does not look like a TLS handshake\n"))
	for range 5 {
		h.Write([]byte("http: TLS handshake error from 127.0.0.1:5556: remote error: tls: unknown certificate authority\n"))
	}
	now = now.Add(2 * time.Second)
	h.Write([]byte("http: TLS handshake error from 127.0.0.1:5557: tls: client didn't provide a certificate\n"))
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 2 {
		t.Fatalf("%d warnings, want 2 (one per second):\n%s", n, out)
	}
	for _, want := range []string{"remote=127.0.0.1:5555", "spoke plaintext", "remote=127.0.0.1:5557", "more_failures_in_last_second=5", "--client-cert-auth"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
