package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/certs"
	"github.com/kvd-project/kvd/internal/freeport"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// testCA is a cluster CA in a temp dir; certificates are issued beside it.
type testCA struct {
	t    *testing.T
	dir  string
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	dir := t.TempDir()
	if err := certs.CreateCA(dir, certs.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, certs.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return &testCA{t: t, dir: dir, pool: pool}
}

// issue writes NAME.crt and NAME.key for 127.0.0.1 (or returns them if
// they exist) and gives their paths.
func (ca *testCA) issue(name string) (string, string) {
	ca.t.Helper()
	c, k := filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	if _, err := os.Stat(c); err == nil {
		return c, k
	}
	if err := certs.Issue(ca.dir, ca.dir, certs.IssueOptions{Name: name, Hosts: []string{"127.0.0.1", "localhost"}}); err != nil {
		ca.t.Fatal(err)
	}
	return c, k
}

// nodeArgs are the TLS flags of a node with certificate name.
func (ca *testCA) nodeArgs(name string, extra ...string) []string {
	c, k := ca.issue(name)
	return append([]string{"--cert-file", c, "--key-file", k, "--trusted-ca-file", filepath.Join(ca.dir, certs.CACertFile)}, extra...)
}

// client trusts this CA and, unless name is "", presents certificate name.
func (ca *testCA) client(name string) *tls.Config {
	ca.t.Helper()
	cfg := &tls.Config{RootCAs: ca.pool}
	if name != "" {
		c, k := ca.issue(name)
		pair, err := tls.LoadX509KeyPair(c, k)
		if err != nil {
			ca.t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

func httpsClient(cfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
}

// startTLSBootstrap starts a single-voter cluster with TLS; the test talks
// to it as clientCert.
func startTLSBootstrap(t *testing.T, ca *testCA, clientCert string, extra ...string) *proc {
	t.Helper()
	api, raft := freeport.Addr(t), freeport.Addr(t)
	args := append([]string{"--data-dir", t.TempDir(), "--listen", api, "--raft-addr", raft}, fastFlags...)
	p := newProc(t, "kvd-boot", api, append(args, ca.nodeArgs("kvd-boot", extra...)...)...)
	p.useTLS(ca.client(clientCert))
	p.start()
	p.waitReady(30 * time.Second)
	return p
}

// raftAddr is the --raft-addr a proc was started with.
func raftAddr(p *proc) string {
	for i, a := range p.args {
		if a == "--raft-addr" && i+1 < len(p.args) {
			return p.args[i+1]
		}
	}
	p.t.Fatalf("%s has no --raft-addr", p.name)
	return ""
}

// sameMembers fails the test if p's membership differs from before.
func sameMembers(t *testing.T, p *proc, before *kvdv1.MembersResponse, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	after, err := membersOf(ctx, p)
	if err != nil {
		t.Fatalf("after %s: members: %v", what, err)
	}
	if fmt.Sprint(roles(before)) != fmt.Sprint(roles(after)) {
		t.Fatalf("%s changed the membership:%s\n->%s", what, describe(before), describe(after))
	}
}

// A cluster over mutual TLS (--client-cert-auth, no secret: the nodes'
// certificates authorize them) forms 3 voters + 2 observers from one
// bootstrap node and four joiners; every outsider is refused with a clear
// error and changes nothing: a plaintext client (HTTP/1.1 and h2c gRPC), a
// client of another CA, a client without a certificate (so without a way
// to Join, Promote or Remove), a node with another CA's certificate (at the
// API and at the Raft port). A certificate rotated on disk is served
// without a restart and the cluster keeps working with it.
func TestTLSMutualClusterRefusesOutsiders(t *testing.T) {
	ca := newTestCA(t)
	auth := "--client-cert-auth"
	boot := startTLSBootstrap(t, ca, "operator", auth)
	procs := []*proc{boot}
	w := startWriters([]*proc{boot}, 2)
	for i := 1; i <= 4; i++ {
		name := fmt.Sprintf("kvd-join%d", i)
		j := newJoiner(t, name, []*proc{boot}, ca.nodeArgs(name, auth)...)
		j.useTLS(ca.client("operator"))
		j.start()
		procs = append(procs, j)
	}
	before := waitShape(t, boot, 3, 2, 120*time.Second)
	acked := w.halt()
	t.Logf("membership over TLS:%s", describe(before))
	for _, p := range procs {
		p.waitReady(20 * time.Second)
		checkAll(t, p, acked, kvdv1.Consistency_CONSISTENCY_LINEARIZABLE)
	}
	ctx := context.Background()
	statusErr := func(c *http.Client, scheme string, opts ...connect.ClientOption) error {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		_, err := kvdv1connect.NewClusterClient(c, scheme+boot.api, opts...).Status(cctx, connect.NewRequest(&kvdv1.StatusRequest{}))
		return err
	}
	prompt := func(what string, f func() error) error {
		t.Helper()
		start := time.Now()
		err := f()
		if err == nil {
			t.Fatalf("%s: served", what)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("%s: failed only after %s (%v)", what, d, err)
		}
		t.Logf("%s: %v", what, err)
		return err
	}

	// Plaintext HTTP/1.1: a 400 that says why.
	resp, err := http.Get("http://" + boot.api + "/healthz")
	if err != nil {
		t.Fatalf("plaintext HTTP/1.1: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTP request to an HTTPS server") {
		t.Fatalf("plaintext HTTP/1.1: %d %q", resp.StatusCode, body)
	}
	// Plaintext gRPC (h2c, prior knowledge).
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	prompt("plaintext gRPC (h2c)", func() error {
		return statusErr(&http.Client{Transport: &http.Transport{Protocols: h2c}}, "http://", connect.WithGRPC())
	})
	// A client of another CA: it cannot verify the node.
	other := newTestCA(t)
	if err := prompt("client of another CA", func() error { return statusErr(httpsClient(other.client("intruder")), "https://") }); !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("client of another CA: %v, want an unknown-authority error", err)
	}
	// A client that trusts the cluster but has no certificate: refused, so
	// it cannot even ask to Join, Promote or Remove.
	stranger := boot.clusterWith(httpsClient(ca.client("")))
	unauthenticated := func(what string, f func() error) {
		t.Helper()
		if err := prompt(what, f); connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "requires a client certificate") {
			t.Fatalf("%s: %v, want Unauthenticated naming the client certificate", what, err)
		}
	}
	unauthenticated("client without a certificate: Status", func() error { return statusErr(httpsClient(ca.client("")), "https://") })
	joinerID := before.Members[len(before.Members)-1].Id
	unauthenticated("client without a certificate: Join", func() error {
		_, err := stranger.Join(ctx, connect.NewRequest(&kvdv1.JoinRequest{ReplicaId: 4242, RaftAddr: "127.0.0.1:1", ApiAddr: "127.0.0.1:2"}))
		return err
	})
	unauthenticated("client without a certificate: Promote", func() error {
		_, err := stranger.Promote(ctx, connect.NewRequest(&kvdv1.PromoteRequest{Id: joinerID}))
		return err
	})
	unauthenticated("client without a certificate: Remove", func() error {
		_, err := stranger.Remove(ctx, connect.NewRequest(&kvdv1.RemoveRequest{Id: joinerID}))
		return err
	})
	// The same client with a certificate of another CA, trusting ours.
	intruder := ca.client("")
	intruder.Certificates = other.client("intruder").Certificates
	prompt("client certificate of another CA: Remove", func() error {
		_, err := boot.clusterWith(httpsClient(intruder)).Remove(ctx, connect.NewRequest(&kvdv1.RemoveRequest{Id: joinerID}))
		return err
	})
	waitFor(t, "the node to log why handshakes failed", 10*time.Second, func() bool {
		return strings.Contains(boot.logs(), "TLS handshake failed") && strings.Contains(boot.logs(), "hint=")
	})
	sameMembers(t, boot, before, "the refused clients")

	// A node whose certificate comes from another CA tries to join: it
	// stops with a message naming the CA, and nothing changes.
	in := newJoiner(t, "kvd-intruder", []*proc{boot}, other.nodeArgs("kvd-intruder", auth)...)
	in.start()
	if err := in.wait(60 * time.Second); err == nil || !strings.Contains(in.logs(), "--trusted-ca-file") {
		t.Fatalf("a node of another CA was not refused clearly: %v\n%s", err, in.logs())
	}
	sameMembers(t, boot, before, "the intruding node")
	// At the Raft port: the handshake is refused (not left hanging).
	rc := ca.client("")
	rc.Certificates = other.client("intruder").Certificates
	prompt("Raft port, certificate of another CA", func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", raftAddr(boot), rc)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("hello")); err != nil {
			return err
		}
		_, err = conn.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return nil // a hang: reported by prompt as "served"
		}
		return err
	})
	sameMembers(t, boot, before, "the Raft connection of another CA")

	// Rotation: a new certificate written over boot's files is served
	// without a restart, and the cluster keeps working (peers verify it).
	certFile, keyFile := ca.issue("kvd-boot")
	newCert, newKey := ca.issue("kvd-boot-rotated")
	replaceFile(t, newKey, keyFile)
	replaceFile(t, newCert, certFile)
	servedName := func() string {
		conn, err := tls.Dial("tcp", boot.api, ca.client("operator"))
		if err != nil {
			return "dial: " + err.Error()
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	waitFor(t, "the rotated certificate to be served", 10*time.Second, func() bool { return servedName() == "kvd-boot-rotated" })
	if _, err := boot.kv().Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte("after-rotation"), Value: []byte("ok")})); err != nil {
		t.Fatalf("put after rotation: %v", err)
	}
	waitShape(t, procs[1], 3, 2, 30*time.Second)
	if !strings.Contains(boot.logs(), "TLS certificate loaded") {
		t.Fatal("the reload was not logged")
	}
}

// clusterWith is a Cluster client on p's https address over c.
func (p *proc) clusterWith(c *http.Client) kvdv1connect.ClusterClient {
	return kvdv1connect.NewClusterClient(c, "https://"+p.api)
}

func replaceFile(t *testing.T, from, to string) {
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

// With TLS and a join secret (no --client-cert-auth), anyone who trusts the
// CA may connect and read, but a stranger without the secret cannot Join,
// Promote, Remove or TransferLeader, not even with a certificate of the
// cluster's CA: PermissionDenied, and the membership is unchanged.
func TestTLSStrangerWithoutSecretIsRefused(t *testing.T) {
	ca := newTestCA(t)
	secret := []string{"--join-secret", "tls-e2e-secret"}
	boot := startTLSBootstrap(t, ca, "", secret...)
	j := newJoiner(t, "kvd-join1", []*proc{boot}, ca.nodeArgs("kvd-join1", secret...)...)
	j.useTLS(ca.client(""))
	j.start()
	before := waitShape(t, boot, 2, 0, 60*time.Second)
	var joinerID uint64
	for _, m := range before.Members {
		if !m.Leader {
			joinerID = m.Id
		}
	}
	ctx := context.Background()
	for _, who := range []string{"", "stranger-with-cluster-cert"} {
		c := boot.clusterWith(httpsClient(ca.client(who)))
		if _, err := c.Status(ctx, connect.NewRequest(&kvdv1.StatusRequest{})); err != nil {
			t.Fatalf("%q: Status (open to all who reach the node): %v", who, err)
		}
		calls := map[string]func() error{
			"Join": func() error {
				_, err := c.Join(ctx, connect.NewRequest(&kvdv1.JoinRequest{ReplicaId: 4242, RaftAddr: "127.0.0.1:1", ApiAddr: "127.0.0.1:2"}))
				return err
			},
			"Promote": func() error {
				_, err := c.Promote(ctx, connect.NewRequest(&kvdv1.PromoteRequest{Id: joinerID}))
				return err
			},
			"Remove": func() error {
				_, err := c.Remove(ctx, connect.NewRequest(&kvdv1.RemoveRequest{Id: joinerID}))
				return err
			},
			"TransferLeader": func() error {
				_, err := c.TransferLeader(ctx, connect.NewRequest(&kvdv1.TransferLeaderRequest{TargetId: joinerID}))
				return err
			},
		}
		for name, call := range calls {
			err := call()
			if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "join secret") {
				t.Fatalf("%q without the secret: %s: %v, want PermissionDenied naming the join secret", who, name, err)
			}
		}
	}
	sameMembers(t, boot, before, "the stranger's calls")
}

// A node that listens beyond loopback with neither a join secret nor
// --client-cert-auth refuses to start and says how to fix it.
func TestTLSGuardRefusesOpenMembershipOffLoopback(t *testing.T) {
	_, port, _ := net.SplitHostPort(freeport.Addr(t))
	p := newProc(t, "kvd-open", "127.0.0.1:"+port, "--data-dir", t.TempDir(), "--listen", "0.0.0.0:"+port, "--raft-addr", freeport.Addr(t))
	p.start()
	if err := p.wait(30 * time.Second); err == nil {
		t.Fatal("kvd started on 0.0.0.0 with open membership")
	}
	for _, fix := range []string{"--join-secret", "--client-cert-auth", "--insecure-open-membership"} {
		if !strings.Contains(p.logs(), fix) {
			t.Fatalf("the refusal does not name %s:\n%s", fix, p.logs())
		}
	}
}

// Cold start over TLS: three nodes with --bootstrap-expect find each other
// through Identify (served before a node starts, behind the same TLS and
// client-certificate check) and form one cluster.
func TestTLSBootstrapExpectForms(t *testing.T) {
	ca := newTestCA(t)
	var apis []string
	for i := 0; i < 3; i++ {
		apis = append(apis, freeport.Addr(t))
	}
	var procs []*proc
	for i, api := range apis {
		name := fmt.Sprintf("kvd%d", i+1)
		args := append([]string{"--data-dir", t.TempDir(), "--listen", api, "--raft-addr", freeport.Addr(t),
			"--join", strings.Join(apis, ","), "--bootstrap-expect", "3"}, fastFlags...)
		p := newProc(t, name, api, append(args, ca.nodeArgs(name, "--client-cert-auth")...)...)
		p.useTLS(ca.client("operator"))
		procs = append(procs, p)
	}
	for _, p := range procs {
		p.start()
	}
	for _, p := range procs {
		p.waitReady(60 * time.Second)
	}
	want := waitShape(t, procs[0], 3, 0, 30*time.Second)
	for _, p := range procs[1:] {
		if ms := waitShape(t, p, 3, 0, 30*time.Second); fmt.Sprint(roles(ms)) != fmt.Sprint(roles(want)) {
			t.Fatalf("%s sees another cluster:%s\nvs%s", p.name, describe(ms), describe(want))
		}
	}
}
