package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// The container harness: one docker compose project per scenario, built
// from docker/compose.yaml and the image kvd:dev (built once per test run
// by docker/build.sh). The host talks to the containers only through their
// published API ports on 127.0.0.1.

var (
	composeFile = mustAbs("../docker/compose.yaml")
	composeTLS  = mustAbs("../docker/compose.tls.yaml")
	composeReg  = mustAbs("../docker/compose.consul.yaml")
	buildScript = mustAbs("../docker/build.sh")
	artifacts   = mustAbs("artifacts")
)

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

var image struct {
	once sync.Once
	err  error
}

// requireDocker skips the test when Docker or compose is missing, unless
// CI=true, where that is a failure. It builds kvd:dev once per test run.
func requireDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("container fault suite skipped in -short mode")
	}
	var missing []string
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		missing = append(missing, fmt.Sprintf("a Docker engine (`docker version`: %v: %s)", err, strings.TrimSpace(string(out))))
	} else if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err != nil {
		missing = append(missing, fmt.Sprintf("the docker compose v2 plugin (`docker compose version`: %v: %s; scripts/install-compose builds it)",
			err, strings.TrimSpace(string(out))))
	}
	if len(missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the container fault suite cannot run: missing %s", strings.Join(missing, "; "))
		}
		t.Skipf("container fault suite skipped: missing %s (set CI=true to make this a failure)", strings.Join(missing, "; "))
	}
	image.once.Do(func() {
		start := time.Now()
		cmd := exec.Command("bash", buildScript)
		out, err := cmd.CombinedOutput()
		if err != nil {
			image.err = fmt.Errorf("docker/build.sh: %v\n%s", err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "e2e: kvd:dev built in %s\n", time.Since(start).Round(time.Second))
	})
	if image.err != nil {
		t.Fatal(image.err)
	}
}

// plaintext, in a scenario's env, runs it without TLS; every other
// scenario runs with docker/compose.tls.yaml: a CA made by a one-shot job,
// nodes that issue their own certificates, TLS-only APIs and mutual TLS on
// Raft.
const plaintext = "KVD_E2E_TLS=0"

// withConsul, in a scenario's env, layers docker/compose.consul.yaml over
// it: the nodes find each other through a Consul container.
const withConsul = "KVD_E2E_CONSUL=1"

// cluster is one compose project.
type cluster struct {
	t       *testing.T
	project string
	env     []string
	tls     bool
	consul  bool
	scheme  string // of the API endpoints: http or https
	http    *http.Client

	mu      sync.Mutex
	nodes   map[string]string // container name → 127.0.0.1:port of its API
	volumes map[string]bool   // every volume a container of the project used
}

// startCluster brings up a fresh project of n replicas and waits until
// they form 3 voters (and n-3 observers), all ready. env adds compose
// variables (KVD_DEAD_AFTER, ...).
func startCluster(t *testing.T, scenario string, n int, env ...string) *cluster {
	t.Helper()
	requireDocker(t)
	c := &cluster{
		t:       t,
		project: fmt.Sprintf("kvd-e2e-%s-%d", strings.ToLower(scenario), os.Getpid()),
		env:     append([]string{"KVD_JOIN_SECRET=" + dockerSecret}, env...),
		tls:     !slices.Contains(env, plaintext),
		consul:  slices.Contains(env, withConsul),
		scheme:  "http",
		http:    newHTTPClient(nil),
		nodes:   map[string]string{},
		volumes: map[string]bool{},
	}
	c.removeStale()
	t.Cleanup(c.teardown)
	c.compose(2*time.Minute, "up", "-d", "--scale", fmt.Sprintf("kvd=%d", n))
	if c.tls {
		c.trustClusterCA()
	}
	c.waitMembers(3, n-3, 90*time.Second)
	return c
}

// trustClusterCA copies the CA certificate the one-shot job made out of
// its container, and talks https to the nodes, trusting only that CA.
func (c *cluster) trustClusterCA() {
	c.t.Helper()
	path := filepath.Join(c.t.TempDir(), "ca.crt")
	c.docker("cp", c.project+"-certs-1:/certs/ca.crt", path)
	pem, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		c.t.Fatalf("%s from the certs job holds no certificate", path)
	}
	c.scheme, c.http = "https", newHTTPClient(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
}

// removeStale tears down projects of this scenario left by test processes
// that no longer run (killed before their cleanup). Projects are named per
// process, so that two runs sharing an engine do not tear down each other.
func (c *cluster) removeStale() {
	prefix := c.project[:strings.LastIndexByte(c.project, '-')+1]
	out, err := c.run(30*time.Second, "docker", "ps", "-a", "--filter", "label=com.docker.compose.project",
		"--format", `{{.Label "com.docker.compose.project"}}`)
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, p := range strings.Fields(out) {
		pid, err := strconv.Atoi(strings.TrimPrefix(p, prefix))
		if !strings.HasPrefix(p, prefix) || err != nil || seen[p] || syscall.Kill(pid, 0) == nil {
			continue
		}
		seen[p] = true
		c.t.Logf("removing project %s left by a test process that is gone", p)
		c.run(2*time.Minute, "docker", "compose", "-p", p, "-f", composeFile, "-f", composeTLS, "down", "-v", "--remove-orphans", "-t", "1")
	}
}

func newHTTPClient(tlsConfig *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     tlsConfig,
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
	}}
}

func (c *cluster) teardown() {
	if c.t.Failed() {
		c.dumpViews()
		c.dumpLogs()
	}
	if out, err := c.run(2*time.Minute, "docker", c.composeArgs("down", "-v", "--remove-orphans", "-t", "5")...); err != nil {
		c.t.Logf("compose down: %v\n%s", err, out)
	}
	// down -v misses the volumes of containers that compose removed when
	// scaling down.
	c.mu.Lock()
	defer c.mu.Unlock()
	for v := range c.volumes {
		c.run(30*time.Second, "docker", "volume", "rm", v)
	}
}

// dumpViews logs every running node's Status and Members view.
func (c *cluster) dumpViews() {
	c.refresh()
	for _, n := range c.names() {
		ep := c.endpoint(n)
		st, err := c.status(ep)
		if err != nil {
			c.t.Logf("%s (%s): status: %v", n, ep, err)
			continue
		}
		c.t.Logf("%s (%s): %s leader=%d term=%d reason=%q", n, ep, describeStatus(st), st.LeaderId, st.Term, st.Reason)
		if ms, err := c.members(ep); err == nil {
			c.t.Logf("%s sees:%s", n, describe(ms))
		} else {
			c.t.Logf("%s: members: %v", n, err)
		}
	}
}

// dumpLogs saves every container's log under artifacts/ and prints its
// tail into the test log.
func (c *cluster) dumpLogs() {
	out, _ := c.run(time.Minute, "docker", c.composeArgs("logs", "--no-color", "--timestamps")...)
	path := filepath.Join(artifacts, c.project+".log")
	if err := os.MkdirAll(artifacts, 0o755); err == nil && os.WriteFile(path, []byte(out), 0o644) == nil {
		c.t.Logf("full container logs: %s", path)
	}
	lines := strings.Split(out, "\n")
	if len(lines) > 300 {
		lines = lines[len(lines)-300:]
	}
	c.t.Logf("---- docker compose logs (last %d lines) ----\n%s", len(lines), strings.Join(lines, "\n"))
}

func (c *cluster) composeArgs(args ...string) []string {
	files := []string{"compose", "-p", c.project, "-f", composeFile}
	if c.tls {
		files = append(files, "-f", composeTLS)
	}
	if c.consul {
		files = append(files, "-f", composeReg)
	}
	return append(files, args...)
}

// run runs a command with a bound and returns its combined output.
func (c *cluster) run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: still running after %s", name, strings.Join(args, " "), timeout)
	}
	return string(out), err
}

// compose runs docker compose on the project and fails the test on error.
func (c *cluster) compose(timeout time.Duration, args ...string) string {
	c.t.Helper()
	out, err := c.run(timeout, "docker", c.composeArgs(args...)...)
	if err != nil {
		c.t.Fatalf("docker compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// docker runs a docker command and fails the test on error.
func (c *cluster) docker(args ...string) string {
	c.t.Helper()
	out, err := c.run(time.Minute, "docker", args...)
	if err != nil {
		c.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// name is the container of replica index i (1-based, as compose numbers them).
func (c *cluster) name(i int) string { return fmt.Sprintf("%s-kvd-%d", c.project, i) }

func (c *cluster) network() string { return c.project + "_default" }

var portRE = regexp.MustCompile(`0\.0\.0\.0:(\d+)->7070/tcp`)

// refresh re-reads the running containers and their published API ports
// (a restarted container may get another host port).
func (c *cluster) refresh() error {
	out, err := c.run(30*time.Second, "docker", "ps", "--no-trunc", "--filter", "label=com.docker.compose.project="+c.project,
		"--format", "{{.Names}}\t{{.Ports}}\t{{.Mounts}}")
	if err != nil {
		return fmt.Errorf("docker ps: %v: %s", err, out)
	}
	nodes := map[string]string{}
	var volumes []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			continue
		}
		if m := portRE.FindStringSubmatch(f[1]); m != nil {
			nodes[f[0]] = "127.0.0.1:" + m[1]
		}
		for _, v := range strings.Split(f[2], ",") {
			if v = strings.TrimSpace(v); v != "" {
				volumes = append(volumes, v)
			}
		}
	}
	c.mu.Lock()
	c.nodes = nodes
	for _, v := range volumes {
		c.volumes[v] = true
	}
	c.mu.Unlock()
	return nil
}

// endpoints returns the API addresses of the running containers, in
// container order.
func (c *cluster) endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.nodes))
	for n := range c.nodes {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return containerIndex(names[i]) < containerIndex(names[j]) })
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = c.nodes[n]
	}
	return out
}

func containerIndex(name string) int {
	i, _ := strconv.Atoi(name[strings.LastIndexByte(name, '-')+1:])
	return i
}

// names returns the running containers, in container order.
func (c *cluster) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for n := range c.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return containerIndex(out[i]) < containerIndex(out[j]) })
	return out
}

func (c *cluster) endpoint(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name]
}

func (c *cluster) clusterClient(ep string) kvdv1connect.ClusterClient {
	return kvdv1connect.NewClusterClient(c.http, c.scheme+"://"+ep, connect.WithInterceptors(secretHeader(dockerSecret)))
}

// dockerSecret is the compose cluster's join secret (KVD_JOIN_SECRET): the
// nodes listen on 0.0.0.0 and refuse to start without one.
const dockerSecret = "kvd-e2e-docker-secret"

// secretHeader sends the join secret on unary calls (Remove needs it).
type secretHeader string

func (s secretHeader) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Kvd-Join-Secret", string(s))
		return next(ctx, req)
	}
}

func (s secretHeader) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (s secretHeader) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func (c *cluster) status(ep string) (*kvdv1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.clusterClient(ep).Status(ctx, connect.NewRequest(&kvdv1.StatusRequest{}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

func (c *cluster) members(ep string) (*kvdv1.MembersResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := c.clusterClient(ep).Members(ctx, connect.NewRequest(&kvdv1.MembersRequest{}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// ids maps each running container to its replica ID, as it reports it.
func (c *cluster) ids() map[string]uint64 {
	out := map[string]uint64{}
	for _, n := range c.names() {
		if st, err := c.status(c.endpoint(n)); err == nil {
			out[n] = st.Id
		}
	}
	return out
}

// leader returns the container that leads, as its own Status says,
// waiting up to 30 s for one.
func (c *cluster) leader() string {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := c.refresh(); err == nil {
			for _, n := range c.names() {
				st, err := c.status(c.endpoint(n))
				if err == nil && st.LeaderId != 0 && st.LeaderId == st.Id {
					return n
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatal("no container reports itself leader within 30s")
	return ""
}

// waitMembers waits until a running node reports exactly voters voters
// and observers observers, every one of them ready, and every running
// container answering. It returns that view.
func (c *cluster) waitMembers(voters, observers int, timeout time.Duration) *kvdv1.MembersResponse {
	c.t.Helper()
	ms, err := c.pollMembers(timeout, func(ms *kvdv1.MembersResponse) bool {
		v, o := countRoles(ms, true)
		return v == voters && o == observers && len(ms.Members) == voters+observers
	})
	if err != nil {
		c.t.Fatalf("want %d voters + %d observers, all ready: %v", voters, observers, err)
	}
	return ms
}

// pollMembers polls Members on every running node until ok holds for one
// answer (and every running container answers Status), or timeout.
func (c *cluster) pollMembers(timeout time.Duration, ok func(*kvdv1.MembersResponse) bool) (*kvdv1.MembersResponse, error) {
	deadline := time.Now().Add(timeout)
	var last *kvdv1.MembersResponse
	var lastErr error
	for time.Now().Before(deadline) {
		if lastErr = c.refresh(); lastErr == nil {
			lastErr = errors.New("no running container")
			all := true
			for _, n := range c.names() {
				if _, err := c.status(c.endpoint(n)); err != nil {
					all, lastErr = false, fmt.Errorf("%s: %w", n, err)
				}
			}
			for _, n := range c.names() {
				ms, err := c.members(c.endpoint(n))
				if err != nil {
					lastErr = fmt.Errorf("%s: %w", n, err)
					continue
				}
				last = ms
				if all && ok(ms) {
					return ms, nil
				}
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if last != nil {
		return last, fmt.Errorf("not within %s; last view:%s (last error: %v)", timeout, describe(last), lastErr)
	}
	return nil, fmt.Errorf("no member view within %s: %v", timeout, lastErr)
}

// countRoles counts voters and observers (only ready ones if ready).
func countRoles(ms *kvdv1.MembersResponse, ready bool) (voters, observers int) {
	for _, m := range ms.Members {
		if ready && !m.Ready {
			continue
		}
		if m.Role == kvdv1.Role_ROLE_VOTER {
			voters++
		} else {
			observers++
		}
	}
	return voters, observers
}
