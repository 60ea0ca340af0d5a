// Package kvtest runs kvd clusters inside one test process: real NodeHosts,
// real Pebble state machines on t.TempDir(), real Connect servers on
// loopback ports. Servers stop at t.Cleanup.
package kvtest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/internal/freeport"
	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/node"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
	"github.com/kvd-project/kvd/server"
)

// Cluster is a static cluster of in-process servers.
type Cluster struct {
	t       testing.TB
	logs    testWriter
	mu      sync.Mutex
	cfgs    []server.Config
	servers []*server.Server      // nil when stopped
	proxies map[string]*raftProxy // by advertised Raft address (RaftProxy)
}

// FastRaft shortens Raft timing for tests: 10 ms ticks, elections in 100–200 ms.
func FastRaft(c *node.Config) {
	c.RTT = 10 * time.Millisecond
	c.ElectionTicks = 10
	c.HeartbeatTicks = 1
}

// NewCluster starts n voters bootstrapped with --initial-members and waits
// until every node is ready.
func NewCluster(t testing.TB, n int, opts ...func(*server.Config)) *Cluster {
	t.Helper()
	logs := newTestWriter(t)
	c := &Cluster{t: t, logs: logs, proxies: map[string]*raftProxy{}}
	members := map[membership.ReplicaID]string{}
	for i := 0; i < n; i++ {
		members[membership.ReplicaID(i+1)] = freeport.Addr(t)
	}
	for i := 0; i < n; i++ {
		cfg := server.DefaultConfig()
		cfg.Listen = freeport.Addr(t)
		cfg.Node.DataDir = t.TempDir()
		cfg.Node.ReplicaID = membership.ReplicaID(i + 1)
		cfg.Node.RaftAddr = members[cfg.Node.ReplicaID]
		cfg.Node.InitialMembers = members
		cfg.Node.APIAddr = cfg.Listen
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", i+1)
		FastRaft(&cfg.Node)
		for _, o := range opts {
			o(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
		c.servers = append(c.servers, nil)
	}
	for i := range c.cfgs {
		c.Start(i)
	}
	t.Cleanup(c.Close)
	c.WaitReady(30 * time.Second)
	return c
}

// testWriter sends log lines to the test's output (shown on failure or with
// -v), and drops them once the test is over: Dragonboat's logger is
// process-global and may outlive a test.
type testWriter struct {
	t    testing.TB
	done *atomic.Bool
}

func newTestWriter(t testing.TB) testWriter {
	w := testWriter{t: t, done: new(atomic.Bool)}
	t.Cleanup(func() { w.done.Store(true) })
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// Join starts a new node that joins the cluster through the running nodes
// (as an observer; it promotes itself while voters < the voter target) and
// returns its index. opts adjust its configuration.
func (c *Cluster) Join(opts ...func(*server.Config)) int {
	c.t.Helper()
	var seeds []string
	for i := range c.cfgs {
		if c.Server(i) != nil {
			seeds = append(seeds, c.Endpoint(i))
		}
	}
	cfg := server.DefaultConfig()
	cfg.Listen = freeport.Addr(c.t)
	cfg.Node.DataDir = c.t.TempDir()
	cfg.Node.RaftAddr = freeport.Addr(c.t)
	cfg.Node.APIAddr = cfg.Listen
	cfg.Node.Seeds = func() []string { return seeds }
	cfg.Node.Policy.PromoteAfter = 200 * time.Millisecond
	FastRaft(&cfg.Node)
	if len(c.cfgs) > 0 {
		cfg.JoinSecret = c.cfgs[0].JoinSecret
	}
	i := len(c.cfgs)
	cfg.Logger = slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", i+1)
	for _, o := range opts {
		o(&cfg)
	}
	c.mu.Lock()
	c.cfgs = append(c.cfgs, cfg)
	c.servers = append(c.servers, nil)
	c.mu.Unlock()
	c.Start(i)
	return i
}

// Start (re)starts server i with its original configuration and data.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	c.mu.Lock()
	cfg := c.cfgs[i]
	c.mu.Unlock()
	s, err := server.New(cfg)
	if err != nil {
		c.t.Fatalf("node %d: %v", i+1, err)
	}
	if err := s.Start(context.Background()); err != nil {
		c.t.Fatalf("node %d: start: %v", i+1, err)
	}
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
}

// Stop stops server i (its data stays for a later Start).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Stop(ctx)
	}
}

// Close stops every server, then the Raft proxies.
func (c *Cluster) Close() {
	for i := range c.servers {
		c.Stop(i)
	}
	c.mu.Lock()
	proxies := c.proxies
	c.proxies = map[string]*raftProxy{}
	c.mu.Unlock()
	for _, p := range proxies {
		p.close()
	}
}

// Server returns server i (nil when stopped).
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// Size is the number of configured nodes.
func (c *Cluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cfgs)
}

// Endpoint is the API address of node i (stable across restarts).
func (c *Cluster) Endpoint(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfgs[i].Listen
}

// Endpoints lists every node's API address.
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.cfgs))
	for i := range c.cfgs {
		out[i] = c.cfgs[i].Listen
	}
	return out
}

// KV returns a generated KV client for node i.
func (c *Cluster) KV(i int) kvdv1connect.KVClient {
	return kvdv1connect.NewKVClient(http.DefaultClient, "http://"+c.Endpoint(i))
}

// ClusterClient returns a generated Cluster client for node i.
func (c *Cluster) ClusterClient(i int) kvdv1connect.ClusterClient {
	return kvdv1connect.NewClusterClient(http.DefaultClient, "http://"+c.Endpoint(i))
}

// WaitReady waits until every running node is ready and they agree on a leader.
func (c *Cluster) WaitReady(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := c.checkReady()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster not ready after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Cluster) checkReady() error {
	var leader membership.ReplicaID
	for i := range c.cfgs {
		s := c.Server(i)
		if s == nil {
			continue
		}
		st := s.Node().Status()
		if !st.Ready || st.LeaderID == 0 {
			return fmt.Errorf("node %d: %s, leader %d", i+1, st.State, st.LeaderID)
		}
		// A node publishes its API address right after it has caught up;
		// tests expect every node's Members view to be complete.
		rows, _, ok := s.Node().Members()
		if !ok {
			return fmt.Errorf("node %d has no view of the members yet", i+1)
		}
		for _, r := range rows {
			if r.APIAddr == "" {
				return fmt.Errorf("node %d does not know member %d's API address yet", i+1, r.ID)
			}
		}
		if leader != 0 && st.LeaderID != leader {
			return fmt.Errorf("node %d sees leader %d, another node sees %d", i+1, st.LeaderID, leader)
		}
		leader = st.LeaderID
	}
	return nil
}

// Leader returns the index of the node that leads, waiting up to 10 s.
func (c *Cluster) Leader() int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i := range c.cfgs {
			s := c.Server(i)
			if s == nil {
				continue
			}
			if st := s.Node().Status(); st.LeaderID == st.ReplicaID && st.LeaderID != 0 {
				return i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader within 10s")
	return -1
}

// Put writes key=value through node i and returns the revision. It retries
// Unavailable and DeadlineExceeded (a proposal lost with a dead leader): a
// repeated plain put of the same value is harmless for tests that check
// that acknowledged writes survive.
func (c *Cluster) Put(i int, key, value string) uint64 {
	c.t.Helper()
	var lastErr error
	for attempt := 0; attempt < 100; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := c.KV(i).Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte(key), Value: []byte(value)}))
		cancel()
		if err == nil {
			return resp.Msg.Revision
		}
		lastErr = err
		if code := connect.CodeOf(err); code != connect.CodeUnavailable && code != connect.CodeDeadlineExceeded {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("put %q via node %d: %v", key, i+1, lastErr)
	return 0
}

// Get reads key through node i (linearizable unless serializable).
func (c *Cluster) Get(i int, key string, serializable bool) (string, error) {
	cons := kvdv1.Consistency_CONSISTENCY_LINEARIZABLE
	if serializable {
		cons = kvdv1.Consistency_CONSISTENCY_SERIALIZABLE
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.KV(i).Get(ctx, connect.NewRequest(&kvdv1.GetRequest{Key: []byte(key), Consistency: cons}))
	if err != nil {
		return "", err
	}
	return string(resp.Msg.Kv.Value), nil
}
