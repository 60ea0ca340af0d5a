package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvd-project/kvd/kvtest"
	"github.com/kvd-project/kvd/server"
)

// kvctl against a real 3-node cluster, as a user types it: options after
// arguments, failover past a dead first endpoint, members as JSON.
func TestAgainstRealCluster(t *testing.T) {
	c := kvtest.NewCluster(t, 3)
	eps := "--endpoints=127.0.0.1:1," + strings.Join(c.Endpoints(), ",") // the first one is dead
	kvctl := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := run(append([]string{"kvctl", eps}, args...), &out, &errOut)
		return out.String(), errOut.String(), code
	}

	if out, errOut, code := kvctl("put", "greeting", "hello"); code != 0 || !strings.HasPrefix(out, "OK revision=") {
		t.Fatalf("put: %q %q exit %d", out, errOut, code)
	}
	if out, errOut, code := kvctl("get", "greeting", "--consistency", "serializable"); code != 0 && code != exitUnavailable {
		t.Fatalf("serializable get: %q %q exit %d", out, errOut, code)
	}
	if out, _, code := kvctl("get", "greeting"); code != 0 || out != "hello\n" {
		t.Fatalf("get = %q exit %d, want bare value", out, code)
	}
	if _, errOut, code := kvctl("get", "nope"); code != exitNotFound || !strings.Contains(errOut, `key "nope" not found`) {
		t.Fatalf("get missing: %q exit %d", errOut, code)
	}

	out, errOut, code := kvctl("members", "-o", "json")
	if code != 0 {
		t.Fatalf("members: %q exit %d", errOut, code)
	}
	var members []map[string]any
	if err := json.Unmarshal([]byte(out), &members); err != nil {
		t.Fatalf("members -o json is not a JSON array: %v\n%s", err, out)
	}
	if len(members) != 3 {
		t.Fatalf("%d members, want 3: %s", len(members), out)
	}
	leaders := 0
	for _, m := range members {
		if m["role"] != "voter" || m["ready"] != true || m["raft_addr"] == "" {
			t.Errorf("member %v: want a ready voter with a raft address", m)
		}
		if api, _ := m["api_addr"].(string); !strings.HasPrefix(api, "127.0.0.1:") {
			t.Errorf("member %v: api_addr %q", m["id"], api)
		}
		if _, ok := m["applied_index"].(float64); !ok {
			t.Errorf("member %v: applied_index not a number", m["id"])
		}
		if m["leader"] == true {
			leaders++
		}
	}
	if leaders != 1 {
		t.Errorf("%d leaders in %s", leaders, out)
	}
	if out, _, code := kvctl("status", "-o", "json"); code != 0 || !strings.Contains(out, `"role"`) {
		t.Fatalf("status: %q exit %d", out, code)
	}
}

// kvctl scan lists every key when the node cuts ranges into pages by bytes
// (here 64 bytes: two keys with their values a page).
func TestScanPagesThroughByteCappedRanges(t *testing.T) {
	c := kvtest.NewCluster(t, 1, func(cfg *server.Config) { cfg.Limits.MaxRangeBytes = 64 })
	var wantKeys strings.Builder
	for i := 0; i < 9; i++ {
		k := fmt.Sprintf("scan/%02d", i)
		c.Put(0, k, fmt.Sprintf("value-%020d", i)) // 33 bytes with the key
		fmt.Fprintf(&wantKeys, "%s\n", k)
	}
	kvctl := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(append([]string{"kvctl", "--endpoints", c.Endpoint(0), "-o", "json"}, args...), &out, &errOut); code != 0 {
			t.Fatalf("kvctl %v: exit %d: %s", args, code, errOut.String())
		}
		return out.String()
	}
	keys := func(out string) []string {
		t.Helper()
		var kvs []struct{ Key, Value string }
		if err := json.Unmarshal([]byte(out), &kvs); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var ks []string
		for _, kv := range kvs {
			if want := "value-0000000000000000000" + kv.Key[len(kv.Key)-1:]; kv.Value != "" && kv.Value != want {
				t.Errorf("%s = %q, want %q", kv.Key, kv.Value, want)
			}
			ks = append(ks, kv.Key)
		}
		return ks
	}
	all := keys(kvctl("scan", "scan/"))
	if got := strings.Join(all, "\n") + "\n"; got != wantKeys.String() {
		t.Errorf("scan listed\n%s\nwant\n%s", got, wantKeys.String())
	}
	if got := keys(kvctl("scan", "--limit", "5", "scan/")); len(got) != 5 || got[4] != "scan/04" {
		t.Errorf("scan --limit 5 = %v, want scan/00..scan/04", got)
	}
	if got := keys(kvctl("scan", "--keys-only", "scan/")); len(got) != 9 {
		t.Errorf("scan --keys-only = %v, want 9 keys", got)
	}
}

// members promote and remove against a real cluster with a join secret: one
// voter and two joined nodes that stay observers (voter target 1).
func TestMembersPromoteRemoveRealCluster(t *testing.T) {
	const secret = "s3cret"
	c := kvtest.NewCluster(t, 1, func(c *server.Config) { c.JoinSecret = secret })
	stayObserver := func(c *server.Config) { c.Node.Policy.Voters = 1 }
	c.Join(stayObserver)
	c.Join(stayObserver)
	c.WaitReady(30 * time.Second)
	eps := "--endpoints=" + strings.Join(c.Endpoints(), ",")
	kvctl := func(args ...string) (string, string, int) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(append([]string{"kvctl", eps, "--timeout", "15s"}, args...), &out, &errOut)
		return out.String(), errOut.String(), code
	}
	// members lists the membership; IDs of joined nodes are random 63-bit
	// numbers, so they are decoded as uint64, not float64.
	members := func() ([]memberJSON, string) {
		t.Helper()
		out, errOut, code := kvctl("members", "-o", "json")
		if code != 0 {
			return nil, fmt.Sprintf("exit %d: %s", code, errOut)
		}
		var ms []memberJSON
		if err := json.Unmarshal([]byte(out), &ms); err != nil {
			t.Fatalf("members -o json: %v\n%s", err, out)
		}
		return ms, out
	}
	// waitFor polls the membership until ok holds; the members' view is
	// refreshed by probes every 500 ms.
	waitFor := func(what string, ok func(map[uint64]memberJSON) bool) map[uint64]memberJSON {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ms, out := members()
			byID := map[uint64]memberJSON{}
			for _, m := range ms {
				byID[m.ID] = m
			}
			if ms != nil && ok(byID) {
				return byID
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s after 30s; last members:\n%s", what, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	roles := func(ms map[uint64]memberJSON) (voters, observers []uint64) {
		for id, m := range ms {
			if m.Role == "voter" {
				voters = append(voters, id)
			} else if m.Role == "observer" && m.State == "ready" {
				observers = append(observers, id)
			}
		}
		slices.Sort(voters)
		slices.Sort(observers)
		return voters, observers
	}

	ms := waitFor("1 voter and 2 ready observers", func(ms map[uint64]memberJSON) bool {
		v, o := roles(ms)
		return len(ms) == 3 && len(v) == 1 && len(o) == 2
	})
	voters, observers := roles(ms)
	if voters[0] != 1 {
		t.Fatalf("voters %v, want [1]", voters)
	}
	a, b := observers[0], observers[1]
	idA, idB := strconv.FormatUint(a, 10), strconv.FormatUint(b, 10)

	// Without the secret: exit 7 and nothing changes.
	if _, errOut, code := kvctl("members", "promote", idA); code != exitPermissionDenied ||
		!strings.Contains(errOut, "wrong or missing join secret") {
		t.Fatalf("promote without --join-secret: exit %d, stderr %q; want %d", code, errOut, exitPermissionDenied)
	}
	if _, errOut, code := kvctl("members", "promote", idA, "--join-secret", "guess"); code != exitPermissionDenied ||
		strings.Contains(errOut, "guess") {
		t.Fatalf("promote with a wrong secret: exit %d, stderr %q", code, errOut)
	}
	if v, o := roles(waitFor("members", func(map[uint64]memberJSON) bool { return true })); !slices.Equal(v, []uint64{1}) ||
		!slices.Equal(o, observers) {
		t.Fatalf("a denied promote changed the membership: voters %v, observers %v", v, o)
	}

	// Removing the only voter would leave no quorum: refused, exit 1, with
	// the server's reason.
	if out, errOut, code := kvctl("--join-secret", secret, "members", "remove", "1"); code != exitGeneric ||
		!strings.Contains(errOut, "remove member 1: refused: membership: change would break the quorum") || out != "" {
		t.Fatalf("remove of the only voter: exit %d, stdout %q, stderr %q; want %d and the reason", code, out, errOut, exitGeneric)
	}

	// With the secret, the observer becomes a voter.
	if out, errOut, code := kvctl("members", "promote", idA, "--join-secret", secret); code != 0 ||
		out != "promoted member "+idA+" to voter\n" {
		t.Fatalf("promote: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	waitFor("member "+idA+" as a voter", func(ms map[uint64]memberJSON) bool {
		return ms[a].Role == "voter" && ms[1].Role == "voter" && ms[b].Role == "observer"
	})

	// Removing the other observer takes it off the list.
	if out, errOut, code := kvctl("--join-secret", secret, "members", "remove", idB); code != 0 ||
		out != "removed member "+idB+"\n" {
		t.Fatalf("remove: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	waitFor("list without member "+idB, func(ms map[uint64]memberJSON) bool {
		_, listed := ms[b]
		return !listed && len(ms) == 2
	})
	// Removed for good: a second remove, or a promote, names no member.
	for _, sub := range []string{"remove", "promote"} {
		if _, errOut, code := kvctl("--join-secret", secret, "members", sub, idB); code != exitNotFound {
			t.Errorf("%s of a removed member: exit %d, stderr %q; want %d", sub, code, errOut, exitNotFound)
		}
	}

	// An ID that was never a member: exit 2.
	if _, errOut, code := kvctl("--join-secret", secret, "members", "promote", "424242"); code != exitNotFound ||
		!strings.Contains(errOut, "promote member 424242: no such member") {
		t.Fatalf("promote of an unknown ID: exit %d, stderr %q; want %d", code, errOut, exitNotFound)
	}
}
