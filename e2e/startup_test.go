package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/internal/freeport"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// The start-up edges: a crash during formation, a voter whose disk was
// lost, a joiner removed before its first start.

// argValue returns the value of flag in args ("" if absent).
func argValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// replicaIDIn reads the replica ID from a data dir's identity.json.
func replicaIDIn(t *testing.T, dir string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var id struct {
		ReplicaID uint64 `json:"replica_id"`
	}
	if err := json.Unmarshal(b, &id); err != nil {
		t.Fatal(err)
	}
	return id.ReplicaID
}

// put writes key=val through p, retrying while the cluster elects a leader.
func put(t *testing.T, p *proc, key, val string) {
	t.Helper()
	waitFor(t, "a write of "+key+" through "+p.name, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := p.kv().Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte(key), Value: []byte(val)}))
		return err == nil
	})
}

// refuses starts p and expects it to exit on its own, with want in its log.
func refuses(t *testing.T, p *proc, want string) {
	t.Helper()
	p.start()
	if err := p.wait(60 * time.Second); err == nil || !strings.Contains(p.logs(), want) {
		t.Fatalf("%s did not refuse to start with %q: %v", p.name, want, err)
	}
}

// Edge a: with --bootstrap-expect, a node that crashes after saving the
// agreed members in identity.json, before Dragonboat's first start, restarts
// with the same flags into the ONE agreed cluster (not a cluster of its own
// from its flags, which name no members): 3 voters, and a write
// acknowledged meanwhile by the other two is there on every node.
func TestFormationCrashAfterIdentity(t *testing.T) {
	var apis, rafts []string
	for i := 0; i < 3; i++ {
		apis, rafts = append(apis, freeport.Addr(t)), append(rafts, freeport.Addr(t))
	}
	var procs []*proc
	for i := range apis {
		args := append([]string{"--data-dir", t.TempDir(), "--listen", apis[i], "--raft-addr", rafts[i],
			"--join", strings.Join(apis, ","), "--bootstrap-expect", "3"}, fastFlags...)
		procs = append(procs, newProc(t, fmt.Sprintf("kvd%d", i+1), apis[i], args...))
	}
	procs[1].env = []string{"KVD_CRASH_AT=after-identity"}
	for _, p := range procs {
		p.start()
	}
	if err := procs[1].wait(60 * time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("kvd2 did not crash after saving its identity: %v", err)
	}
	// Two interleavings are right. If the others saw kvd2 agree before it
	// crashed, they bootstrap the agreed set and serve with two of three
	// voters. If kvd2 crashed in the instant between deciding and their
	// next look, they never saw it agree and wait for it (3 expected):
	// they must not form anything without it.
	acked := map[string]string{}
	if procs[0].readyWithin(20 * time.Second) {
		procs[2].waitReady(60 * time.Second)
		put(t, procs[0], "before-restart", "acked-by-two")
		acked["before-restart"] = "acked-by-two"
	} else {
		t.Log("kvd2 crashed before the others saw it agree: they wait for it")
		if procs[2].readyWithin(time.Second) {
			t.Fatal("kvd3 is ready while kvd1 waits for kvd2: two clusters?")
		}
	}

	procs[1].start() // the same command, no crash point
	for _, p := range procs {
		p.waitReady(60 * time.Second)
	}
	first := waitShape(t, procs[0], 3, 0, 60*time.Second)
	for _, p := range procs[1:] {
		if ms := waitShape(t, p, 3, 0, 30*time.Second); fmt.Sprint(roles(ms)) != fmt.Sprint(roles(first)) {
			t.Fatalf("%s sees another cluster:%s\nvs%s", p.name, describe(ms), describe(first))
		}
	}
	put(t, procs[0], "after-restart", "acked-by-three")
	acked["after-restart"] = "acked-by-three"
	for _, p := range procs {
		checkAll(t, p, acked, kvdv1.Consistency_CONSISTENCY_LINEARIZABLE)
	}
}

// startStaticSeeded starts n static members that also know each other's API
// addresses (--join), as the README's 3-node example does: a member whose
// data dir is empty asks them whether its ID has run before.
func startStaticSeeded(t *testing.T, n int) []*proc {
	t.Helper()
	var apis, rafts, members []string
	for i := 0; i < n; i++ {
		apis, rafts = append(apis, freeport.Addr(t)), append(rafts, freeport.Addr(t))
		members = append(members, fmt.Sprintf("%d=%s", i+1, rafts[i]))
	}
	procs := make([]*proc, n)
	for i := range procs {
		procs[i] = newProc(t, fmt.Sprintf("kvd%d", i+1), apis[i],
			"--data-dir", t.TempDir(), "--listen", apis[i], "--raft-addr", rafts[i],
			"--node-id", fmt.Sprint(i+1), "--initial-members", strings.Join(members, ","),
			"--join", strings.Join(apis, ","), "--rtt", "10ms", "--promote-after", "500ms", "--log-level", "info")
		procs[i].start()
	}
	for _, p := range procs {
		p.waitReady(30 * time.Second)
	}
	return procs
}

// Edge b: a static voter SIGKILLed and restarted with the same command on an
// empty data dir (its disk was lost) refuses to come back as replica 2 with
// an empty log, and names --rejoin; with --rejoin it has replica 2 removed,
// joins under a new ID and is promoted: 3 voters again, every acknowledged
// write on every node. The same command (with --rejoin) restarts it as the
// new replica.
func TestLostDiskStaticMemberRejoins(t *testing.T) {
	procs := startStaticSeeded(t, 3)
	w := startWriters(procs, 2)
	waitFor(t, "100 acknowledged writes", 20*time.Second, func() bool { return w.count() >= 100 })
	waitShape(t, procs[0], 3, 0, 30*time.Second) // every member has published its metadata

	lost := procs[1]
	lost.kill()
	dir := argValue(lost.args, "--data-dir")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	refuses(t, lost, "--rejoin")
	if !strings.Contains(lost.logs(), "has run") {
		t.Fatalf("the refusal does not say why:\n%s", lost.logs())
	}

	lost.args = append(lost.args, "--rejoin")
	lost.start()
	lost.waitReady(60 * time.Second)
	ms := waitShape(t, procs[0], 3, 0, 60*time.Second)
	newID := replicaIDIn(t, dir)
	if r := roles(ms); newID == 2 || r[2] != 0 || r[newID] != kvdv1.Role_ROLE_VOTER {
		t.Fatalf("want replica 2 gone and %d a voter:%s", newID, describe(ms))
	}
	acked := w.halt()
	t.Logf("acknowledged %d writes, %d failed attempts; replica 2 came back as %d", len(acked), w.failed.Load(), newID)
	for _, p := range procs {
		checkAll(t, p, acked, kvdv1.Consistency_CONSISTENCY_LINEARIZABLE)
	}
	lost.waitReady(10 * time.Second)
	checkAll(t, lost, acked, kvdv1.Consistency_CONSISTENCY_SERIALIZABLE)

	if err := lost.stop(); err != nil {
		t.Fatal(err)
	}
	lost.start()
	lost.waitReady(30 * time.Second)
	if again := waitShape(t, procs[0], 3, 0, 30*time.Second); fmt.Sprint(roles(again)) != fmt.Sprint(roles(ms)) {
		t.Fatalf("roles changed over a restart:%s\nthen:%s", describe(ms), describe(again))
	}
}

// Edge d: a joiner removed after its Join returned but before its first
// start is refused when it asks again; it records removed.json, so that
// --rejoin (as the message says) joins under a new ID.
func TestJoinerRemovedBeforeStartRejoins(t *testing.T) {
	boot := startBootstrap(t)
	j := newJoiner(t, "kvd-joiner", []*proc{boot}, "--voters", "1")
	j.env = []string{"KVD_CRASH_AT=after-join"}
	j.start()
	if err := j.wait(60 * time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("joiner did not crash after its join: %v", err)
	}
	dir := argValue(j.args, "--data-dir")
	old := replicaIDIn(t, dir)
	cl := kvdv1connect.NewClusterClient(http.DefaultClient, "http://"+boot.api)
	waitFor(t, "the removal of the joiner", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := cl.Remove(ctx, connect.NewRequest(&kvdv1.RemoveRequest{Id: old}))
		return err == nil
	})

	refuses(t, j, "--rejoin")
	if _, err := os.Stat(filepath.Join(dir, "removed.json")); err != nil {
		t.Fatalf("the refused join left no removal marker: %v", err)
	}
	j.args = append(j.args, "--rejoin")
	j.start()
	j.waitReady(60 * time.Second)
	ms := waitShape(t, boot, 1, 1, 60*time.Second)
	newID := replicaIDIn(t, dir)
	if r := roles(ms); newID == old || r[newID] != kvdv1.Role_ROLE_OBSERVER {
		t.Fatalf("want a new observer (old ID %d, identity now %d):%s", old, newID, describe(ms))
	}
}

// Five static members with seeds, started together for the first time: the
// lost-disk check finds no member that has run, so they all bootstrap.
func TestStaticSeededFiveAtOnce(t *testing.T) {
	procs := startStaticSeeded(t, 5)
	ms := waitShape(t, procs[0], 5, 0, 30*time.Second)
	for id := uint64(1); id <= 5; id++ {
		if roles(ms)[id] != kvdv1.Role_ROLE_VOTER {
			t.Fatalf("replica %d is not a voter:%s", id, describe(ms))
		}
	}
}

// Edge b, the other way to lose it: identity.json is there but raft/ is
// gone. The started marker says the replica ran: refused; --rejoin wipes
// the old state machine and joins under a new ID.
func TestLostRaftDirRejoins(t *testing.T) {
	procs := startStaticSeeded(t, 3)
	put(t, procs[0], "k", "v")
	lost := procs[2]
	lost.kill()
	dir := argValue(lost.args, "--data-dir")
	if err := os.RemoveAll(filepath.Join(dir, "raft")); err != nil {
		t.Fatal(err)
	}
	refuses(t, lost, "--rejoin")
	if !strings.Contains(lost.logs(), "Raft state (raft/) is gone") {
		t.Fatalf("the refusal does not say why:\n%s", lost.logs())
	}
	lost.args = append(lost.args, "--rejoin")
	lost.start()
	lost.waitReady(60 * time.Second)
	ms := waitShape(t, procs[0], 3, 0, 60*time.Second)
	if r := roles(ms); r[3] != 0 || len(r) != 3 {
		t.Fatalf("want replica 3 replaced:%s", describe(ms))
	}
	checkAll(t, lost, map[string]string{"k": "v"}, kvdv1.Consistency_CONSISTENCY_SERIALIZABLE)
}
