package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvd-project/kvd/certs"
)

// The generator drives a node that requires client certificates with
// --cacert, --cert and --key, over every transport, and marks its results
// as TLS runs.
func TestTLSFlags(t *testing.T) {
	dir := t.TempDir()
	if err := certs.CreateCA(dir, certs.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node", "bench"} {
		if err := certs.Issue(dir, dir, certs.IssueOptions{Name: name, Hosts: []string{"127.0.0.1"}}); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	noop, err := startNoop(128, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer noop.stop()
	srv := httptest.NewUnstartedServer(noop.http.Handler)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()

	tlsFlags := []string{"--cacert", filepath.Join(dir, "ca.crt"), "--cert", filepath.Join(dir, "bench.crt"),
		"--key", filepath.Join(dir, "bench.key")}
	for _, tc := range []struct {
		args      []string
		transport string
	}{
		{[]string{"--unary"}, "http1+tls"},
		{[]string{"--unary", "--transport", "h2c"}, "h2c+tls"},
		{[]string{"--unary", "--protocol", "grpc"}, "h2c+tls"},
		{nil, "stream+tls"},
		{[]string{"--protocol", "grpc-go", "--spread"}, "h2c+tls"},
	} {
		t.Run(tc.transport+strings.Join(tc.args, " "), func(t *testing.T) {
			args := append([]string{"--endpoints", srv.Listener.Addr().String(), "--clients", "4", "--ops", "100",
				"--warmup", "0s", "--json"}, tlsFlags...)
			out, err := runApp(t, append(args, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			r := decodeResults(t, out)[0]
			if r.Ops != 100 || r.Errors != 0 || r.Transport != tc.transport {
				t.Errorf("result %+v (first error: %s), want 100 ops over %s", r, r.FirstError, tc.transport)
			}
		})
	}
	// Without the client certificate the preflight says what to pass.
	_, err = runApp(t, "--endpoints", srv.Listener.Addr().String(), "--ops", "10", "--cacert", filepath.Join(dir, "ca.crt"))
	if err == nil || !strings.Contains(err.Error(), "pass --cert and --key") {
		t.Errorf("without --cert: %v, want the hint", err)
	}
}
