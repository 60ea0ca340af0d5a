package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/kvd-project/kvd/internal/freeport"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// The Consul harness: a real Consul dev agent (its state lives in memory,
// so a restart is a registry that forgot everything) on loopback ports
// chosen free, and kvd nodes that find each other in its catalog with
// --discover consul:kvd. The agent's log and catalog are printed when a
// test fails; the kvd logs are printed by newProc's cleanup.

const consulService = "kvd"

// catalog reads (and writes by hand) the service's instances in a Consul
// agent: the one consulAgent runs, or one in a container.
type catalog struct {
	t   *testing.T
	api *api.Client
}

// consulAgent is one Consul dev agent; start, stop and kill may repeat.
type consulAgent struct {
	*catalog
	bin    string
	args   []string
	addr   string // HTTP API, 127.0.0.1:port
	leader string // its server (RPC) address, which it reports as leader
	log    *syncBuffer

	cmd  *exec.Cmd
	done chan struct{}
}

func newCatalog(t *testing.T, addr, token string) *catalog {
	t.Helper()
	client, err := api.NewClient(&api.Config{Address: addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return &catalog{t: t, api: client}
}

// consulBinary finds the consul binary: $KVD_CONSUL_BIN, else consul on
// PATH, else where scripts/install-consul puts it. Without one the test is
// skipped, or fails under CI=true.
func consulBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KVD_CONSUL_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p
	}
	tools := os.Getenv("KVD_TOOLS")
	if tools == "" {
		home, _ := os.UserHomeDir()
		tools = filepath.Join(home, ".cache", "kvd")
	}
	p := filepath.Join(tools, "bin", "consul")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and no consul binary ($KVD_CONSUL_BIN, PATH, %s): run scripts/install-consul", p)
	}
	t.Skipf("no consul binary ($KVD_CONSUL_BIN, PATH, %s): run scripts/install-consul (set CI=true to make this a failure)", p)
	return ""
}

// freeAddrs returns n distinct free loopback addresses.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		out[i] = freeport.Addr(t)
	}
	return out
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// startConsul starts a dev agent on free loopback ports (gRPC and HTTPS
// off) and waits until it has elected itself leader.
func startConsul(t *testing.T) *consulAgent {
	t.Helper()
	return startConsulWith(t, "")
}

// startConsulWith is startConsul with more agent arguments (extra); the
// test's own catalog calls carry token ("" = none).
func startConsulWith(t *testing.T, token string, extra ...string) *consulAgent {
	t.Helper()
	bin := consulBinary(t)
	ports := freeAddrs(t, 5)
	a := &consulAgent{catalog: newCatalog(t, ports[0], token), bin: bin, addr: ports[0], leader: ports[2], log: new(syncBuffer)}
	a.args = append([]string{"agent", "-dev", "-node=kvd-e2e", "-bind=127.0.0.1", "-client=127.0.0.1", "-log-level=info",
		"-http-port=" + portOf(ports[0]), "-dns-port=" + portOf(ports[1]), "-server-port=" + portOf(ports[2]),
		"-serf-lan-port=" + portOf(ports[3]), "-serf-wan-port=" + portOf(ports[4]),
		"-grpc-port=-1", "-grpc-tls-port=-1", "-https-port=-1"}, extra...)
	t.Cleanup(a.cleanup)
	a.start()
	return a
}

func (a *consulAgent) cleanup() {
	if a.t.Failed() && a.cmd != nil {
		a.t.Logf("---- consul catalog of %s at the failure ----%s", consulService, a.describe())
	}
	a.kill()
	if a.t.Failed() {
		a.t.Logf("---- consul agent log ----\n%s", a.log.String())
	}
}

// start runs the agent (with empty state: it is a dev agent) on the same
// ports and waits up to 30 s for it to lead.
func (a *consulAgent) start() {
	a.t.Helper()
	cmd := exec.Command(a.bin, a.args...)
	cmd.Stdout, cmd.Stderr = a.log, a.log
	fmt.Fprintf(a.log, "---- start %s %s\n", a.bin, strings.Join(a.args, " "))
	if err := cmd.Start(); err != nil {
		a.t.Fatalf("consul: start: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	a.cmd, a.done = cmd, done
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader, err := a.api.Status().Leader()
		if err == nil && leader == a.leader {
			return
		}
		select {
		case <-done:
			a.t.Fatalf("consul agent exited at start: %v\n%s", cmd.ProcessState, a.log.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("consul agent on %s has no leader after 30s (last: %q, %v)", a.addr, leader, err)
		}
	}
}

// stop interrupts the agent (a dev agent exits with code 1 then: normal)
// and waits for it to be gone.
func (a *consulAgent) stop() {
	a.t.Helper()
	if a.cmd == nil {
		return
	}
	a.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		a.kill()
		a.t.Fatal("consul agent still running 15s after SIGINT")
	}
	a.cmd = nil
}

// kill SIGKILLs the agent and waits for it to be gone.
func (a *consulAgent) kill() {
	if a.cmd == nil {
		return
	}
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	a.cmd = nil
}

// instances returns every instance of the service with its health.
func (c *catalog) instances() ([]*api.ServiceEntry, error) {
	entries, _, err := c.api.Health().Service(consulService, "", false, nil)
	return entries, err
}

// describe prints the service's instances, for failure messages.
func (c *catalog) describe() string {
	entries, err := c.instances()
	if err != nil {
		return fmt.Sprintf("\n  (catalog unreadable: %v)", err)
	}
	if len(entries) == 0 {
		return "\n  (no instances)"
	}
	var b strings.Builder
	for _, e := range entries {
		var names []string
		for k := range e.Service.Meta {
			names = append(names, k)
		}
		sort.Strings(names)
		fmt.Fprintf(&b, "\n  %s %s:%d %s", e.Service.ID, e.Service.Address, e.Service.Port, e.Checks.AggregatedStatus())
		for _, k := range names {
			fmt.Fprintf(&b, " %s=%q", k, e.Service.Meta[k])
		}
		// What each check last saw (a critical /readyz check's output
		// tells a refused connection from a timeout or a 503).
		for _, c := range e.Checks {
			fmt.Fprintf(&b, "\n    check %s %s: %q", c.CheckID, c.Status, strings.TrimSpace(c.Output))
		}
	}
	return b.String()
}

// waitCatalog polls the service's instances until check returns nil, and
// fails with its last error and the catalog after timeout. It returns how
// long it took.
func (c *catalog) waitCatalog(what string, timeout time.Duration, check func([]*api.ServiceEntry) error) time.Duration {
	c.t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		var entries []*api.ServiceEntry
		if entries, err = c.instances(); err == nil {
			if err = check(entries); err == nil {
				return time.Since(start)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("after %s, not %s: %v\ncatalog:%s", timeout, what, err, c.describe())
	return 0
}

// instanceID is the ID a kvd node registers under.
func instanceID(apiAddr string) string { return consulService + "-" + apiAddr }

func byID(entries []*api.ServiceEntry) map[string]*api.ServiceEntry {
	out := map[string]*api.ServiceEntry{}
	for _, e := range entries {
		out[e.Service.ID] = e
	}
	return out
}

func roleName(r kvdv1.Role) string {
	switch r {
	case kvdv1.Role_ROLE_VOTER:
		return "voter"
	case kvdv1.Role_ROLE_OBSERVER:
		return "observer"
	}
	return r.String()
}

// matchesMember says why a member's instance does not show it as it is:
// passing, ready, its replica ID, role and Raft address.
func matchesMember(e *api.ServiceEntry, m *kvdv1.Member) error {
	meta := e.Service.Meta
	addr := net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port))
	switch {
	case e.Checks.AggregatedStatus() != api.HealthPassing:
		return fmt.Errorf("%s is %s", e.Service.ID, e.Checks.AggregatedStatus())
	case addr != m.ApiAddr:
		return fmt.Errorf("%s: address %s, want %s", e.Service.ID, addr, m.ApiAddr)
	case meta["replica_id"] != strconv.FormatUint(m.Id, 10):
		return fmt.Errorf("%s: replica_id %q, want %d", e.Service.ID, meta["replica_id"], m.Id)
	case meta["role"] != roleName(m.Role):
		return fmt.Errorf("%s: role %q, want %q", e.Service.ID, meta["role"], roleName(m.Role))
	case meta["raft_addr"] != m.RaftAddr:
		return fmt.Errorf("%s: raft_addr %q, want %q", e.Service.ID, meta["raft_addr"], m.RaftAddr)
	case meta["ready"] != "true":
		return fmt.Errorf("%s: ready %q", e.Service.ID, meta["ready"])
	}
	return nil
}

// registered checks that every member of ms has a passing instance that
// shows it as it is, and that every passing instance carries one and the
// same non-empty cluster ID, which it returns. With exact, the passing
// instances must be the members and no more.
func registered(entries []*api.ServiceEntry, ms *kvdv1.MembersResponse, exact bool) (string, error) {
	ids := byID(entries)
	for _, m := range ms.Members {
		e := ids[instanceID(m.ApiAddr)]
		if e == nil {
			return "", fmt.Errorf("member %d (%s) has no instance %s", m.Id, m.ApiAddr, instanceID(m.ApiAddr))
		}
		if err := matchesMember(e, m); err != nil {
			return "", err
		}
	}
	clusters, passing := map[string]bool{}, 0
	for _, e := range entries {
		if e.Checks.AggregatedStatus() == api.HealthPassing {
			clusters[e.Service.Meta["cluster_id"]] = true
			passing++
		}
	}
	if exact && passing != len(ms.Members) {
		return "", fmt.Errorf("%d passing instances for %d members", passing, len(ms.Members))
	}
	if len(clusters) != 1 || clusters[""] {
		return "", fmt.Errorf("passing instances carry cluster IDs %v, want one", keys(clusters))
	}
	return keys(clusters)[0], nil
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// waitRegistered waits until the catalog shows the members of ms (see
// registered) and returns their cluster ID.
func (c *catalog) waitRegistered(ms *kvdv1.MembersResponse, exact bool, timeout time.Duration) string {
	c.t.Helper()
	var cluster string
	took := c.waitCatalog("showing the members as they are", timeout, func(entries []*api.ServiceEntry) (err error) {
		cluster, err = registered(entries, ms, exact)
		return err
	})
	c.t.Logf("catalog shows the %d members (cluster %s) after %s", len(ms.Members), cluster, took.Round(10*time.Millisecond))
	return cluster
}

// waitHealth waits until instance id has the given aggregated status.
func (c *catalog) waitHealth(id, status string, timeout time.Duration) time.Duration {
	c.t.Helper()
	return c.waitCatalog(id+" "+status, timeout, func(entries []*api.ServiceEntry) error {
		e := byID(entries)[id]
		if e == nil {
			return errors.New("no such instance")
		}
		if got := e.Checks.AggregatedStatus(); got != status {
			return fmt.Errorf("%s is %s", id, got)
		}
		return nil
	})
}

// newConsulNode prepares (does not start) a kvd node that finds its peers
// in a's catalog and forms a cluster of 3 voters with them.
func newConsulNode(t *testing.T, a *consulAgent, name string, extra ...string) *proc {
	t.Helper()
	addrs := freeAddrs(t, 2)
	args := append([]string{"--data-dir", t.TempDir(), "--listen", addrs[0], "--raft-addr", addrs[1],
		"--discover", "consul:" + consulService, "--consul-addr", a.addr,
		"--bootstrap-expect", "3", "--voters", "3", "--log-level", "info"}, fastFlags...)
	return newProc(t, name, addrs[0], append(args, extra...)...)
}

// startConsulCluster starts n nodes at once and waits until they form one
// cluster of 3 voters (and n-3 observers) that the catalog shows.
func startConsulCluster(t *testing.T, a *consulAgent, n int) ([]*proc, *kvdv1.MembersResponse, string) {
	t.Helper()
	procs := make([]*proc, n)
	for i := range procs {
		procs[i] = newConsulNode(t, a, fmt.Sprintf("kvd%d", i+1))
	}
	for _, p := range procs {
		p.start()
	}
	for _, p := range procs {
		waitServing(t, p, 60*time.Second)
	}
	ms := waitShape(t, procs[0], 3, n-3, 60*time.Second)
	for _, p := range procs[1:] {
		// A second cluster would show another shape or other IDs.
		if got := waitShape(t, p, 3, n-3, 30*time.Second); fmt.Sprint(roles(got)) != fmt.Sprint(roles(ms)) {
			t.Fatalf("%s sees another cluster:%s\nvs%s", p.name, describe(got), describe(ms))
		}
	}
	return procs, ms, a.waitRegistered(ms, true, 15*time.Second)
}

// running says whether p's process has not exited.
func running(p *proc) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// waitServing is waitReady that fails at once when p exits (a flag it
// does not know, a refusal) instead of after timeout.
func waitServing(t *testing.T, p *proc, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for readyz(p) != http.StatusOK {
		if !running(p) {
			t.Fatalf("%s exited before it was ready", p.name)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %s", p.name, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readyz(p *proc) int {
	resp, err := p.client.Get(p.scheme + p.api + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// registerByHand registers an instance at addr with an HTTP check on
// addr/readyz, as a kvd node would: critical where nothing listens.
func (c *catalog) registerByHand(addr string, meta map[string]string) {
	c.t.Helper()
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	err := c.api.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: instanceID(addr), Name: consulService, Address: host, Port: port, Meta: meta,
		Check: &api.AgentServiceCheck{HTTP: "http://" + addr + "/readyz", Interval: "1s", Timeout: "1s"},
	})
	if err != nil {
		c.t.Fatalf("register %s by hand: %v", instanceID(addr), err)
	}
}

// The harness itself: the agent starts, serves its catalog and health,
// stops on SIGINT, comes back with empty state, and dies on SIGKILL.
func TestConsulAgentHarness(t *testing.T) {
	a := startConsul(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	register := func() {
		t.Helper()
		a.registerByHand(addr, map[string]string{"role": "voter"})
		a.waitHealth(instanceID(addr), api.HealthPassing, 10*time.Second)
	}
	empty := func() {
		t.Helper()
		a.waitCatalog("empty", time.Second, func(entries []*api.ServiceEntry) error {
			if len(entries) > 0 {
				return fmt.Errorf("%d instances after a restart", len(entries))
			}
			return nil
		})
	}
	register()
	a.stop()
	if _, err := a.api.Status().Leader(); err == nil {
		t.Fatal("the agent still answers after SIGINT")
	}
	a.start()
	empty()
	register()
	a.kill()
	if _, err := a.api.Status().Leader(); err == nil {
		t.Fatal("the agent still answers after SIGKILL")
	}
	a.start()
	empty()
}

// consulFromEnv makes p find the agent as the consul CLI does, through
// CONSUL_HTTP_ADDR in its environment (for its next start), instead of
// --consul-addr.
func consulFromEnv(p *proc, a *consulAgent) {
	for i, arg := range p.args {
		if arg == "--consul-addr" {
			p.args = append(p.args[:i:i], p.args[i+2:]...)
			break
		}
	}
	p.env = append(p.env, "CONSUL_HTTP_ADDR="+a.addr)
}

// foreignNode is a live node of another cluster: a real one-node kvd
// cluster, registered in its own service (kvd-foreign), reached through a
// proxy that answers /readyz with 503, so that registered by hand under
// this service it is critical while it answers everything else.
type foreignNode struct {
	addr string            // the proxy's
	meta map[string]string // the node's own entry's meta, cluster ID included

	mu    sync.Mutex
	asked []string // the requests other than /readyz that reached it
}

func startForeignNode(t *testing.T, a *consulAgent) *foreignNode {
	t.Helper()
	const service = "kvd-foreign"
	addrs := freeAddrs(t, 2)
	p := newProc(t, service, addrs[0], append([]string{"--data-dir", t.TempDir(), "--listen", addrs[0], "--raft-addr", addrs[1],
		"--discover", "consul:" + service, "--consul-addr", a.addr, "--bootstrap-expect", "1", "--voters", "1",
		"--log-level", "info"}, fastFlags...)...)
	p.start()
	waitServing(t, p, 60*time.Second)
	f := new(foreignNode)
	waitFor(t, service+" registered with its cluster ID", 15*time.Second, func() bool {
		entries, _, err := a.api.Health().Service(service, "", true, nil)
		if err != nil || len(entries) != 1 {
			return false
		}
		f.meta = entries[0].Service.Meta
		return f.meta["cluster_id"] != ""
	})
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: p.api})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			http.Error(w, "critical on purpose", http.StatusServiceUnavailable)
			return
		}
		f.mu.Lock()
		f.asked = append(f.asked, r.URL.Path)
		f.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.addr = strings.TrimPrefix(srv.URL, "http://")
	return f
}

// calls returns (and forgets) the requests that reached the node.
func (f *foreignNode) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.asked
	f.asked = nil
	return out
}
