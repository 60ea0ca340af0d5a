package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/consul/api"

	"github.com/kvd-project/kvd/internal/freeport"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// Consul as the cluster's registry (issue 10), on real kvd processes and a
// real Consul dev agent (harness in consul_test.go).

// Cold start from zero: five nodes started at once form one cluster of 3
// voters + 2 observers through Consul's catalog, which shows each of them
// passing with its role and one cluster ID; a sixth node started later
// (finding Consul through CONSUL_HTTP_ADDR, without --consul-addr) joins
// that cluster and shows up beside them.
func TestConsulColdStartFiveAtOnce(t *testing.T) {
	a := startConsul(t)
	procs, _, cluster := startConsulCluster(t, a, 5)
	sixth := newConsulNode(t, a, "kvd6")
	consulFromEnv(sixth, a)
	sixth.start()
	a.waitCatalog("kvd6 registered (through CONSUL_HTTP_ADDR)", 10*time.Second, func(entries []*api.ServiceEntry) error {
		if byID(entries)[instanceID(sixth.api)] == nil {
			return fmt.Errorf("no instance %s", instanceID(sixth.api))
		}
		return nil
	})
	waitServing(t, sixth, 60*time.Second)
	ms := waitShape(t, procs[0], 3, 3, 60*time.Second)
	if got := waitShape(t, sixth, 3, 3, 30*time.Second); fmt.Sprint(roles(got)) != fmt.Sprint(roles(ms)) {
		t.Fatalf("kvd6 sees another cluster:%s\nvs%s", describe(got), describe(ms))
	}
	if again := a.waitRegistered(ms, true, 15*time.Second); again != cluster {
		t.Fatalf("cluster ID %s after kvd6 joined, %s before", again, cluster)
	}
}

// A SIGKILLed node's instance stays in the catalog and turns critical
// within a few seconds; restarted, it is passing again.
func TestConsulHealthFollowsKilledNode(t *testing.T) {
	a := startConsul(t)
	procs, ms, _ := startConsulCluster(t, a, 3)
	victim := procs[1]
	victim.kill()
	took := a.waitHealth(instanceID(victim.api), api.HealthCritical, 10*time.Second)
	t.Logf("%s critical %s after SIGKILL", victim.name, took.Round(10*time.Millisecond))
	victim.start()
	waitServing(t, victim, 30*time.Second)
	took = a.waitHealth(instanceID(victim.api), api.HealthPassing, 10*time.Second)
	t.Logf("%s passing %s after it was ready again", victim.name, took.Round(10*time.Millisecond))
	a.waitRegistered(ms, true, 10*time.Second)
}

// Life without the registry: with Consul dead every node restarts from its
// own state and the cluster serves; a new node without state waits and
// says why instead of forming a cluster of its own. Consul back (empty):
// every node registers again within seconds, and the new node joins.
func TestConsulDownRestartAndReturn(t *testing.T) {
	a := startConsul(t)
	procs, ms, cluster := startConsulCluster(t, a, 3)
	put(t, procs[0], "before", "consul-up")
	a.kill()
	for _, p := range procs {
		if err := p.stop(); err != nil {
			t.Fatal(err)
		}
		p.start()
	}
	for _, p := range procs {
		waitServing(t, p, 60*time.Second)
	}
	acked := map[string]string{"before": "consul-up"}
	for i, p := range procs {
		key := fmt.Sprintf("during-%d", i)
		put(t, p, key, "consul-down")
		acked[key] = "consul-down"
	}
	for _, p := range procs {
		checkAll(t, p, acked, kvdv1.Consistency_CONSISTENCY_LINEARIZABLE)
	}

	newcomer := newConsulNode(t, a, "kvd-new")
	newcomer.start()
	waitFor(t, "kvd-new to log that it cannot reach Consul", 30*time.Second, func() bool {
		l := strings.ToLower(newcomer.logs())
		return strings.Contains(l, "consul") && strings.Contains(l, "connection refused")
	})
	if !running(newcomer) || readyz(newcomer) == http.StatusOK {
		t.Fatalf("kvd-new should wait for Consul, not ready (running=%v, /readyz %d)", running(newcomer), readyz(newcomer))
	}
	waitShape(t, procs[0], 3, 0, 10*time.Second)

	back := time.Now()
	a.start()
	if again := a.waitRegistered(ms, false, 10*time.Second); again != cluster {
		t.Fatalf("cluster ID %s after Consul came back, %s before", again, cluster)
	}
	t.Logf("every node registered again %s after Consul started", time.Since(back).Round(10*time.Millisecond))
	waitServing(t, newcomer, 60*time.Second)
	all := waitShape(t, procs[0], 3, 1, 60*time.Second)
	if again := a.waitRegistered(all, true, 15*time.Second); again != cluster {
		t.Fatalf("cluster ID %s after kvd-new joined, %s before", again, cluster)
	}
	checkAll(t, newcomer, acked, kvdv1.Consistency_CONSISTENCY_SERIALIZABLE)
}

// Stale instances do not mislead a new node, and it does not even ask
// them: a live node of another cluster (critical), the entry a removed
// member left behind (the real cluster's ID, the removed replica's ID: as
// when Consul missed its deregistration), a dead one of another cluster,
// one that never knew its cluster. It joins the real cluster, whose voters
// stay 3, and no second cluster appears. Without registry.Order's filter
// the newcomer would ask the live foreign node (Identify) while forming.
func TestConsulStaleInstancesIgnored(t *testing.T) {
	a := startConsul(t)
	procs, _, cluster := startConsulCluster(t, a, 3)
	removed := removedMemberEntry(t, a, procs[0], cluster)
	foreign := startForeignNode(t, a)
	if foreign.meta["cluster_id"] == cluster {
		t.Fatalf("the foreign cluster has the real one's ID %s", cluster)
	}
	a.registerByHand(foreign.addr, foreign.meta)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := kvdv1connect.NewClusterClient(http.DefaultClient, "http://"+foreign.addr).Status(ctx, connect.NewRequest(&kvdv1.StatusRequest{}))
	if err != nil || fmt.Sprint(st.Msg.Id) != foreign.meta["replica_id"] {
		t.Fatalf("the foreign node does not answer through its proxy: %v %v", st, err)
	}
	foreign.calls()
	dead := freeAddrs(t, 4)
	a.registerByHand(dead[0], map[string]string{"replica_id": "4242", "raft_addr": dead[1], "role": "voter",
		"ready": "true", "cluster_id": "0123456789abcdef", "state": "ready"})
	a.registerByHand(dead[2], map[string]string{"replica_id": "", "raft_addr": dead[3], "role": "joining",
		"ready": "false", "cluster_id": "", "state": "joining"})
	for _, addr := range []string{foreign.addr, removed, dead[0], dead[2]} {
		a.waitHealth(instanceID(addr), api.HealthCritical, 10*time.Second)
	}

	newcomer := newConsulNode(t, a, "kvd-new")
	newcomer.start()
	waitServing(t, newcomer, 60*time.Second)
	ms := waitShape(t, procs[0], 3, 1, 60*time.Second)
	if got := waitShape(t, newcomer, 3, 1, 30*time.Second); fmt.Sprint(roles(got)) != fmt.Sprint(roles(ms)) {
		t.Fatalf("kvd-new sees another cluster:%s\nvs%s", describe(got), describe(ms))
	}
	if again := a.waitRegistered(ms, true, 15*time.Second); again != cluster {
		t.Fatalf("cluster ID %s after kvd-new joined, %s before", again, cluster)
	}
	if asked := foreign.calls(); len(asked) > 0 {
		t.Fatalf("kvd-new asked the other cluster's node: %v", asked)
	}
}

// removedMemberEntry has a new member join through Consul and removes it
// through member m: it exits and takes its entry out of the catalog. The
// entry is then registered again by hand, as Consul would keep it had the
// deregistration been lost; its address is returned.
func removedMemberEntry(t *testing.T, a *consulAgent, m *proc, cluster string) string {
	t.Helper()
	p := newConsulNode(t, a, "kvd-removed")
	p.start()
	waitServing(t, p, 60*time.Second)
	waitShape(t, m, 3, 1, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := p.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.cluster().Remove(ctx, connect.NewRequest(&kvdv1.RemoveRequest{Id: st.Id})); err != nil {
		t.Fatalf("remove %s (replica %d): %v", p.name, st.Id, err)
	}
	if err := p.wait(30 * time.Second); err == nil || strings.Contains(err.Error(), "still running") {
		t.Fatalf("%s removed: want it to exit with an error, got %v", p.name, err)
	}
	a.waitCatalog(instanceID(p.api)+" deregistered", 10*time.Second, func(entries []*api.ServiceEntry) error {
		if e := byID(entries)[instanceID(p.api)]; e != nil {
			return fmt.Errorf("%s still listed, %s", e.Service.ID, e.Checks.AggregatedStatus())
		}
		return nil
	})
	a.registerByHand(p.api, map[string]string{"replica_id": fmt.Sprint(st.Id), "raft_addr": st.RaftAddr,
		"role": "observer", "ready": "false", "cluster_id": cluster, "state": "removed"})
	return p.api
}

// Healthy instances of two clusters under one service: a new node refuses
// to pick one, says why and waits (not ready, not a member); once the
// other cluster's instance is gone it joins the real cluster.
func TestConsulTwoHealthyClustersRefused(t *testing.T) {
	a := startConsul(t)
	procs, _, cluster := startConsulCluster(t, a, 3)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer other.Close()
	otherAddr := strings.TrimPrefix(other.URL, "http://")
	a.registerByHand(otherAddr, map[string]string{"replica_id": "7", "raft_addr": freeport.Addr(t), "role": "voter",
		"ready": "true", "cluster_id": "00000000feedface", "state": "ready"})
	a.waitHealth(instanceID(otherAddr), api.HealthPassing, 10*time.Second)

	newcomer := newConsulNode(t, a, "kvd-new")
	newcomer.start()
	waitFor(t, "kvd-new to log that healthy instances belong to 2 clusters", 30*time.Second, func() bool {
		return strings.Contains(newcomer.logs(), "belong to 2 clusters")
	})
	if !running(newcomer) || readyz(newcomer) == http.StatusOK {
		t.Fatalf("kvd-new should refuse to pick a cluster, not be ready (running=%v, /readyz %d)", running(newcomer), readyz(newcomer))
	}
	waitShape(t, procs[0], 3, 0, 10*time.Second)

	if err := a.api.Agent().ServiceDeregister(instanceID(otherAddr)); err != nil {
		t.Fatal(err)
	}
	waitServing(t, newcomer, 60*time.Second)
	ms := waitShape(t, procs[0], 3, 1, 60*time.Second)
	if again := a.waitRegistered(ms, true, 15*time.Second); again != cluster {
		t.Fatalf("cluster ID %s after kvd-new joined, %s before", again, cluster)
	}
}

// A node stopped with --leave-on-exit leaves the cluster and takes its
// instance out of the catalog (a plain stop keeps it, critical).
func TestConsulLeaveOnExitDeregisters(t *testing.T) {
	a := startConsul(t)
	procs, _, cluster := startConsulCluster(t, a, 3)
	leaver := newConsulNode(t, a, "kvd-leaver", "--leave-on-exit")
	leaver.start()
	waitServing(t, leaver, 60*time.Second)
	a.waitRegistered(waitShape(t, procs[0], 3, 1, 60*time.Second), true, 15*time.Second)
	if err := leaver.stop(); err != nil {
		t.Fatal(err)
	}
	ms := waitShape(t, procs[0], 3, 0, 30*time.Second)
	took := a.waitCatalog(instanceID(leaver.api)+" deregistered", 10*time.Second, func(entries []*api.ServiceEntry) error {
		if e := byID(entries)[instanceID(leaver.api)]; e != nil {
			return fmt.Errorf("%s still listed, %s", e.Service.ID, e.Checks.AggregatedStatus())
		}
		return nil
	})
	t.Logf("%s deregistered %s after its exit", leaver.name, took.Round(10*time.Millisecond))
	if again := a.waitRegistered(ms, true, 10*time.Second); again != cluster {
		t.Fatalf("cluster ID %s after kvd-leaver left, %s before", again, cluster)
	}
}
