package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/internal/freeport"
	"github.com/kvd-project/kvd/membership"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// fast Raft and autopilot timing for tests.
var fastFlags = []string{"--rtt", "10ms", "--promote-after", "500ms"}

// startBootstrap starts a single-voter cluster.
func startBootstrap(t *testing.T, extra ...string) *proc {
	t.Helper()
	api, raft := freeport.Addr(t), freeport.Addr(t)
	args := append([]string{"--data-dir", t.TempDir(), "--listen", api, "--raft-addr", raft}, fastFlags...)
	p := newProc(t, "kvd-boot", api, append(args, extra...)...)
	p.start()
	p.waitReady(30 * time.Second)
	return p
}

// newJoiner prepares (does not start) a node that joins through seeds.
func newJoiner(t *testing.T, name string, seeds []*proc, extra ...string) *proc {
	t.Helper()
	var addrs []string
	for _, s := range seeds {
		addrs = append(addrs, s.api)
	}
	api, raft := freeport.Addr(t), freeport.Addr(t)
	args := append([]string{"--data-dir", t.TempDir(), "--listen", api, "--raft-addr", raft,
		"--join", strings.Join(addrs, ",")}, fastFlags...)
	return newProc(t, name, api, append(args, extra...)...)
}

func membersOf(ctx context.Context, p *proc) (*kvdv1.MembersResponse, error) {
	resp, err := p.cluster().Members(ctx, connect.NewRequest(&kvdv1.MembersRequest{}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// roles maps member ID to role, as the given node reports them.
func roles(ms *kvdv1.MembersResponse) map[uint64]kvdv1.Role {
	out := map[uint64]kvdv1.Role{}
	for _, m := range ms.Members {
		out[m.Id] = m.Role
	}
	return out
}

func describe(ms *kvdv1.MembersResponse) string {
	var b strings.Builder
	for _, m := range ms.Members {
		fmt.Fprintf(&b, "\n  %d %s %s applied=%d leader=%v reason=%q", m.Id, m.Role, m.State, m.AppliedIndex, m.Leader, m.Reason)
	}
	return b.String()
}

// waitShape waits until node p reports exactly voters voters and observers
// observers, all ready, each with its API address published (a node
// publishes it right after it is first ready: tests that compare the view
// with a registry or dial the addresses need it).
func waitShape(t *testing.T, p *proc, voters, observers int, timeout time.Duration) *kvdv1.MembersResponse {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *kvdv1.MembersResponse
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ms, err := membersOf(ctx, p)
		cancel()
		if err == nil {
			last = ms
			v, o, ready := 0, 0, 0
			for _, m := range ms.Members {
				if m.Role == kvdv1.Role_ROLE_VOTER {
					v++
				} else {
					o++
				}
				if m.Ready && m.ApiAddr != "" {
					ready++
				}
			}
			if v == voters && o == observers && ready == v+o {
				return ms
			}
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("after %s: want %d voters + %d observers, all ready; %s reports:%s", timeout, voters, observers, p.name, describe(last))
	}
	t.Fatalf("after %s: %s answers no members: %v", timeout, p.name, lastErr)
	return nil
}

// One bootstrap node and four joiners end as 3 voters + 2 observers without
// an operator, with every acknowledged write on every node.
func TestJoinFourNodesFormsThreeVotersTwoObservers(t *testing.T) {
	boot := startBootstrap(t)
	procs := []*proc{boot}
	w := startWriters([]*proc{boot}, 2)
	for i := 1; i <= 4; i++ {
		j := newJoiner(t, fmt.Sprintf("kvd-join%d", i), []*proc{boot})
		j.start()
		procs = append(procs, j)
	}
	ms := waitShape(t, boot, 3, 2, 60*time.Second)
	acked := w.halt()
	t.Logf("membership:%s", describe(ms))
	for _, p := range procs {
		p.waitReady(10 * time.Second)
		checkAll(t, p, acked, kvdv1.Consistency_CONSISTENCY_LINEARIZABLE)
	}
	// Each observer explains why it stays one (its reason is probed, so it
	// may take a moment to settle).
	waitFor(t, "observers to explain that the voter target is reached", 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ms, err := membersOf(ctx, boot)
		if err != nil {
			return false
		}
		for _, m := range ms.Members {
			if m.Role == kvdv1.Role_ROLE_OBSERVER && !strings.Contains(m.Reason, "voter target reached (3 of 3)") {
				return false
			}
		}
		return true
	})
}

// A joiner SIGKILLed at each step of join → catch-up → promote → snapshot
// restarts with the same command, ends a voter, and loses no acknowledged
// write.
func TestJoinerSIGKILLAtEachStep(t *testing.T) {
	for _, point := range []string{
		membership.CrashAfterJoin, membership.CrashBeforeReady, membership.CrashBeforePromote,
		membership.CrashAfterPromote, membership.CrashAfterSnapshot,
	} {
		t.Run(point, func(t *testing.T) {
			boot := startBootstrap(t)
			w := startWriters([]*proc{boot}, 2)
			waitFor(t, "writes before the join", 10*time.Second, func() bool { return w.count() >= 50 })
			j := newJoiner(t, "kvd-joiner", []*proc{boot})
			j.env = []string{membership.CrashEnv + "=" + point}
			j.start()
			if err := j.wait(60 * time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("joiner did not crash at %s: %v", point, err)
			}
			j.start() // the same command, no crash point
			ms := waitShape(t, boot, 2, 0, 60*time.Second)
			acked := w.halt()
			j.waitReady(10 * time.Second)
			checkAll(t, j, acked, kvdv1.Consistency_CONSISTENCY_SERIALIZABLE)
			// And once more after a clean restart: still a voter.
			if err := j.stop(); err != nil {
				t.Fatal(err)
			}
			j.start()
			j.waitReady(30 * time.Second)
			ms2 := waitShape(t, boot, 2, 0, 30*time.Second)
			if fmt.Sprint(roles(ms)) != fmt.Sprint(roles(ms2)) {
				t.Fatalf("roles changed over a restart:%s\nthen:%s", describe(ms), describe(ms2))
			}
			checkAll(t, j, acked, kvdv1.Consistency_CONSISTENCY_SERIALIZABLE)
		})
	}
}

// SIGKILL of a whole elastic cluster (1 bootstrap + 4 joiners), then a
// restart with the same commands: the same roles and the same data.
func TestElasticClusterWholeSIGKILL(t *testing.T) {
	boot := startBootstrap(t)
	procs := []*proc{boot}
	for i := 1; i <= 4; i++ {
		j := newJoiner(t, fmt.Sprintf("kvd-join%d", i), []*proc{boot})
		j.start()
		procs = append(procs, j)
	}
	before := waitShape(t, boot, 3, 2, 60*time.Second)
	w := startWriters(procs, 4)
	waitFor(t, "writes", 20*time.Second, func() bool { return w.count() >= 200 })
	for _, p := range procs {
		p.kill()
	}
	acked := w.halt()
	for _, p := range procs {
		p.start()
	}
	after := waitShape(t, boot, 3, 2, 60*time.Second)
	if fmt.Sprint(roles(before)) != fmt.Sprint(roles(after)) {
		t.Fatalf("roles before:%s\nafter:%s", describe(before), describe(after))
	}
	for _, p := range procs {
		p.waitReady(30 * time.Second)
		checkAll(t, p, acked, kvdv1.Consistency_CONSISTENCY_SERIALIZABLE)
	}
}

// A voter killed for good is replaced within --dead-after plus a few
// seconds: an observer takes its seat, then the dead voter is removed.
func TestDeadVoterIsReplaced(t *testing.T) {
	dead := []string{"--dead-after", "3s"}
	boot := startBootstrap(t, dead...)
	procs := []*proc{boot}
	for i := 1; i <= 3; i++ {
		j := newJoiner(t, fmt.Sprintf("kvd-join%d", i), []*proc{boot}, dead...)
		j.start()
		procs = append(procs, j)
	}
	before := waitShape(t, boot, 3, 1, 60*time.Second)
	var victim *proc
	var victimID uint64
	for _, m := range before.Members {
		if m.Role == kvdv1.Role_ROLE_VOTER && !m.Leader {
			for _, p := range procs {
				if p.api == m.ApiAddr {
					victim, victimID = p, m.Id
				}
			}
		}
	}
	if victim == nil {
		t.Fatalf("no follower voter to kill:%s", describe(before))
	}
	killed := time.Now()
	victim.kill()
	var survivor *proc
	for _, p := range procs {
		if p != victim {
			survivor = p
		}
	}
	after := waitShape(t, survivor, 3, 0, 3*time.Second+20*time.Second)
	t.Logf("voter %d replaced in %s:%s", victimID, time.Since(killed).Round(100*time.Millisecond), describe(after))
	if _, ok := roles(after)[victimID]; ok {
		t.Fatalf("dead voter %d still a member", victimID)
	}
}

// Without the right join secret a node is refused (PermissionDenied), exits
// with a message saying so, and the membership is unchanged.
func TestWrongJoinSecretIsRefused(t *testing.T) {
	boot := startBootstrap(t, "--join-secret", "right-secret")
	before := waitShape(t, boot, 1, 0, 10*time.Second)
	j := newJoiner(t, "kvd-stranger", []*proc{boot}, "--join-secret", "wrong-secret")
	j.start()
	err := j.wait(30 * time.Second)
	if err == nil || !strings.Contains(j.logs(), "wrong or missing join secret") {
		t.Fatalf("stranger was not refused: %v\n%s", err, j.logs())
	}
	if strings.Contains(boot.logs(), "right-secret") || strings.Contains(j.logs(), "right-secret") {
		t.Fatal("the secret appears in a log")
	}
	after := waitShape(t, boot, 1, 0, 10*time.Second)
	if fmt.Sprint(roles(before)) != fmt.Sprint(roles(after)) {
		t.Fatalf("membership changed:%s\n->%s", describe(before), describe(after))
	}
	// With the right secret the same node joins.
	ok := newJoiner(t, "kvd-friend", []*proc{boot}, "--join-secret", "right-secret")
	ok.start()
	waitShape(t, boot, 2, 0, 30*time.Second)
}

// SIGTERM with --leave-on-exit: the leader hands over leadership, removes
// itself and exits cleanly; the observer takes its seat. Started again with
// the same command it refuses to serve, and says how to rejoin.
func TestLeaveOnExit(t *testing.T) {
	leave := []string{"--leave-on-exit"}
	boot := startBootstrap(t, leave...)
	procs := []*proc{boot}
	for i := 1; i <= 3; i++ {
		j := newJoiner(t, fmt.Sprintf("kvd-join%d", i), []*proc{boot}, leave...)
		j.start()
		procs = append(procs, j)
	}
	before := waitShape(t, boot, 3, 1, 60*time.Second)
	if leader := leaderIndex(t, procs); procs[leader] != boot {
		t.Logf("leader is %s, not the bootstrap node", procs[leader].name)
	}
	w := startWriters(procs[1:], 2)
	waitFor(t, "writes", 10*time.Second, func() bool { return w.count() >= 50 })
	if err := boot.stop(); err != nil {
		t.Fatalf("leaving node: %v\n%s", err, boot.logs())
	}
	after := waitShape(t, procs[1], 3, 0, 30*time.Second)
	acked := w.halt()
	for id := range roles(before) {
		if roles(before)[id] == kvdv1.Role_ROLE_VOTER && roles(after)[id] == 0 {
			t.Logf("replica %d left", id)
		}
	}
	if len(roles(after)) != 3 {
		t.Fatalf("after leaving:%s", describe(after))
	}
	for _, p := range procs[1:] {
		checkAll(t, p, acked, kvdv1.Consistency_CONSISTENCY_LINEARIZABLE)
	}
	boot.start()
	if err := boot.wait(20 * time.Second); err == nil || !strings.Contains(boot.logs(), "--rejoin") {
		t.Fatalf("a node that left must refuse to serve and name --rejoin: %v", err)
	}
}

// Five nodes with no state, started at the same instant with
// --bootstrap-expect 3 and each other's addresses: exactly one cluster
// forms, 3 voters + 2 observers, and a restart of all keeps it.
func TestBootstrapExpectFiveAtOnce(t *testing.T) {
	var apis, rafts []string
	for i := 0; i < 5; i++ {
		apis, rafts = append(apis, freeport.Addr(t)), append(rafts, freeport.Addr(t))
	}
	var procs []*proc
	for i := range apis {
		args := append([]string{"--data-dir", t.TempDir(), "--listen", apis[i], "--raft-addr", rafts[i],
			"--join", strings.Join(apis, ","), "--bootstrap-expect", "3"}, fastFlags...)
		procs = append(procs, newProc(t, fmt.Sprintf("kvd%d", i+1), apis[i], args...))
	}
	for _, p := range procs {
		go p.start()
	}
	for _, p := range procs {
		p.waitReady(60 * time.Second)
	}
	before := waitShape(t, procs[0], 3, 2, 60*time.Second)
	for _, p := range procs[1:] {
		// Every node sees the same single cluster (a second cluster would
		// show another shape or other IDs).
		if ms := waitShape(t, p, 3, 2, 30*time.Second); fmt.Sprint(roles(ms)) != fmt.Sprint(roles(before)) {
			t.Fatalf("%s sees another cluster:%s\nvs%s", p.name, describe(ms), describe(before))
		}
	}
	for _, p := range procs {
		p.kill()
	}
	for _, p := range procs {
		p.start()
	}
	after := waitShape(t, procs[4], 3, 2, 60*time.Second)
	if fmt.Sprint(roles(before)) != fmt.Sprint(roles(after)) {
		t.Fatalf("roles before:%s\nafter:%s", describe(before), describe(after))
	}
}
