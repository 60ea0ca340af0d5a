package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

func TestPutAndGet(t *testing.T) {
	f := newFakeKVD(t)
	ep := "--endpoints=" + f.addr

	out, errOut, code := runKvctl(t, "", ep, "put", "greeting", "hello world")
	if code != 0 || out != "OK revision=1\n" {
		t.Fatalf("put: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = runKvctl(t, "", ep, "get", "greeting")
	if code != 0 || out != "hello world\n" {
		t.Errorf("get: code %d, stdout %q; want the bare value and a newline", code, out)
	}
	if f.lastConsistency() != kvdv1.Consistency_CONSISTENCY_LINEARIZABLE {
		t.Errorf("default consistency = %v, want linearizable", f.lastConsistency())
	}

	out, _, code = runKvctl(t, "", ep, "-o", "json", "put", "greeting", "hi")
	if code != 0 || strings.TrimSpace(out) != "{\n  \"revision\": 2\n}" {
		t.Errorf("put -o json: code %d, stdout %q", code, out)
	}
	out, _, code = runKvctl(t, "", ep, "--output", "json", "get", "--consistency", "serializable", "greeting")
	if code != 0 {
		t.Fatalf("get -o json: code %d", code)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("get -o json printed %q: %v", out, err)
	}
	want := map[string]any{"key": "greeting", "value": "hi", "create_revision": 1.0, "mod_revision": 2.0,
		"version": 2.0}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("get -o json = %v, want %v", got, want)
	}
	if f.lastConsistency() != kvdv1.Consistency_CONSISTENCY_SERIALIZABLE {
		t.Errorf("--consistency serializable sent %v", f.lastConsistency())
	}
}

func TestPutFromStdin(t *testing.T) {
	f := newFakeKVD(t)
	value := "line 1\nline 2\n\x00binary"
	if _, errOut, code := runKvctl(t, value, "--endpoints", f.addr, "put", "k", "-"); code != 0 {
		t.Fatalf("put k -: code %d, stderr %q", code, errOut)
	}
	out, _, _ := runKvctl(t, "", "--endpoints", f.addr, "get", "k")
	if out != value+"\n" {
		t.Errorf("get = %q, want %q", out, value+"\n")
	}
	// Binary values are base64 in JSON.
	if _, errOut, code := runKvctl(t, "", "--endpoints", f.addr, "put", "b", "\xff\xfe"); code != 0 {
		t.Fatalf("put of a binary value: code %d, stderr %q", code, errOut)
	}
	out, _, _ = runKvctl(t, "", "--endpoints", f.addr, "-o", "json", "get", "b")
	if !strings.Contains(out, `"value_base64": "//4="`) || strings.Contains(out, `"value":`) {
		t.Errorf("get -o json of a binary value = %s", out)
	}
}

func TestGetNotFound(t *testing.T) {
	f := newFakeKVD(t)
	for _, output := range []string{"table", "json"} {
		out, errOut, code := runKvctl(t, "", "--endpoints", f.addr, "-o", output, "get", "x")
		if code != exitNotFound {
			t.Errorf("-o %s: exit code %d, want %d", output, code, exitNotFound)
		}
		if out != "" {
			t.Errorf("-o %s: stdout %q, want nothing", output, out)
		}
		if errOut != "Error: key \"x\" not found\n" {
			t.Errorf("-o %s: stderr %q", output, errOut)
		}
	}
}

func TestPutCompareAndSwap(t *testing.T) {
	f := newFakeKVD(t)
	ep := "--endpoints=" + f.addr
	rev := f.set("k", "v1")

	out, errOut, code := runKvctl(t, "", ep, "put", "--if-mod-revision", "1", "k", "v2")
	if code != 0 || out != "OK revision=2\n" {
		t.Fatalf("CAS with the current revision %d: code %d, %q %q", rev, code, out, errOut)
	}
	out, errOut, code = runKvctl(t, "", ep, "put", "--if-mod-revision", "1", "k", "v3")
	if code != exitCompareFailed || out != "" {
		t.Errorf("stale CAS: code %d, stdout %q; want %d", code, out, exitCompareFailed)
	}
	if want := `compare failed: key "k" does not have mod revision 1 (its mod revision is 2)`; !strings.Contains(errOut, want) {
		t.Errorf("stderr %q does not contain %q", errOut, want)
	}
	_, errOut, code = runKvctl(t, "", ep, "put", "--if-mod-revision=0", "k", "v3")
	if code != exitCompareFailed || !strings.Contains(errOut, `key "k" already exists`) {
		t.Errorf("create-only put of an existing key: code %d, stderr %q", code, errOut)
	}
	if _, _, code = runKvctl(t, "", ep, "put", "--if-mod-revision=0", "new", "v"); code != 0 {
		t.Errorf("create-only put of a new key: code %d", code)
	}
	if out, _, _ = runKvctl(t, "", ep, "get", "k"); out != "v2\n" {
		t.Errorf("after the failed CAS the value is %q, want v2", out)
	}
}

func TestDel(t *testing.T) {
	f := newFakeKVD(t)
	ep := "--endpoints=" + f.addr
	f.set("a", "1")
	f.set("b", "2")
	if out, _, code := runKvctl(t, "", ep, "del", "a"); code != 0 || out != "OK revision=3 deleted=1\n" {
		t.Errorf("del a: code %d, stdout %q", code, out)
	}
	if out, _, code := runKvctl(t, "", ep, "del", "a"); code != 0 || out != "OK revision=4 deleted=0\n" {
		t.Errorf("del of a missing key: code %d, stdout %q", code, out)
	}
	out, _, code := runKvctl(t, "", ep, "-o", "json", "delete", "b")
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 ||
		!reflect.DeepEqual(got, map[string]any{"revision": 5.0, "deleted": true}) {
		t.Errorf("del -o json: code %d, %q (%v)", code, out, err)
	}
	if _, errOut, code := runKvctl(t, "", ep, "del", "--if-mod-revision", "9", "c"); code != exitCompareFailed {
		t.Errorf("compare-and-delete mismatch: code %d, stderr %q", code, errOut)
	}
}

func TestScan(t *testing.T) {
	f := newFakeKVD(t)
	ep := "--endpoints=" + f.addr
	f.set("user/1", "ann")
	f.set("user/2", "bob")
	f.set("user/3", "tab\there")
	f.set("user/4", "")
	f.set("users", "not under user/")
	f.set("zzz", "other")

	out, errOut, code := runKvctl(t, "", ep, "scan", "user/")
	want := "KEY     VALUE\n" +
		"user/1  ann\n" +
		"user/2  bob\n" +
		"user/3  \"tab\\there\"\n" +
		"user/4  \"\"\n"
	if code != 0 || out != want {
		t.Errorf("scan user/: code %d, stderr %q, stdout\n%s\nwant\n%s", code, errOut, out, want)
	}

	out, _, _ = runKvctl(t, "", ep, "scan", "--limit", "3", "--keys-only", "user/")
	if want := "KEY\nuser/1\nuser/2\nuser/3\n"; out != want {
		t.Errorf("scan --limit 3 --keys-only = %q, want %q", out, want)
	}

	out, _, code = runKvctl(t, "", ep, "-o", "json", "scan", "--limit", "2", "--consistency=serializable", "user/")
	var kvs []map[string]any
	if err := json.Unmarshal([]byte(out), &kvs); err != nil || code != 0 {
		t.Fatalf("scan -o json: code %d, %q: %v", code, out, err)
	}
	wantJSON := []map[string]any{
		{"key": "user/1", "value": "ann", "create_revision": 1.0, "mod_revision": 1.0, "version": 1.0},
		{"key": "user/2", "value": "bob", "create_revision": 2.0, "mod_revision": 2.0, "version": 1.0},
	}
	if !reflect.DeepEqual(kvs, wantJSON) {
		t.Errorf("scan -o json = %v, want %v", kvs, wantJSON)
	}
	if f.lastConsistency() != kvdv1.Consistency_CONSISTENCY_SERIALIZABLE {
		t.Errorf("scan --consistency=serializable sent %v", f.lastConsistency())
	}

	out, _, _ = runKvctl(t, "", ep, "-o", "json", "scan", "--keys-only", "zzz")
	if strings.Contains(out, "value") || !strings.Contains(out, `"key": "zzz"`) {
		t.Errorf("scan --keys-only -o json = %s", out)
	}
	out, _, code = runKvctl(t, "", ep, "-o", "json", "scan", "nothing/")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("empty scan -o json: code %d, %q; want []", code, out)
	}
	out, _, _ = runKvctl(t, "", ep, "scan", "")
	if n := strings.Count(out, "\n"); n != 7 {
		t.Errorf("scan \"\" printed %d lines, want a header and 6 keys:\n%s", n, out)
	}
}

func TestMembers(t *testing.T) {
	f := newFakeKVD(t)
	out, errOut, code := runKvctl(t, "", "--endpoints", f.addr, "members")
	if code != 0 {
		t.Fatalf("members: code %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("members printed %d lines, want a header and 3 members:\n%s", len(lines), out)
	}
	header := strings.Join(strings.Fields(lines[0]), " ")
	if header != "ID ROLE STATE RAFT ADDR API ADDR APPLIED LAG LEADER DOWN REASON" {
		t.Errorf("header = %q", lines[0])
	}
	// DOWN is empty for reachable members, so it vanishes from Fields.
	for i, want := range [][]string{
		{"1", "voter", "ready", "10.0.0.1:7071", "10.0.0.1:7070", "42", "0", "true", "-"},
		{"2", "voter", "unreachable", "10.0.0.2:7071", "10.0.0.2:7070", "41", "1", "false", "12s", "connection", "refused"},
		{"4", "observer", "catching-up", "10.0.0.4:7071", "-", "30", "12", "false", "lag", "12", "above"},
	} {
		if got := strings.Fields(lines[i+1]); len(got) < len(want) || !reflect.DeepEqual(got[:len(want)], want) {
			t.Errorf("row %d = %q, want it to start with %q", i, got, want)
		}
	}
	// Columns line up: every row's ROLE and REASON start where the header's do.
	for _, name := range []string{"ROLE", "REASON"} {
		col := strings.Index(lines[0], name)
		for _, l := range lines[1:] {
			if l[col-1] != ' ' || l[col] == ' ' {
				t.Errorf("row %q is not aligned with the header's %s", l, name)
			}
		}
	}
	// DOWN holds the duration for the unreachable member, blanks for the others.
	col := strings.Index(lines[0], "DOWN")
	for i, want := range []string{"   ", "12s", "   "} {
		if got := lines[i+1][col : col+3]; got != want {
			t.Errorf("row %d: DOWN = %q, want %q", i, got, want)
		}
	}
}

func TestMembersJSON(t *testing.T) {
	f := newFakeKVD(t)
	out, _, code := runKvctl(t, "", "--endpoints", f.addr, "-o", "json", "members")
	if code != 0 {
		t.Fatalf("members -o json: code %d", code)
	}
	var members []map[string]any
	if err := json.Unmarshal([]byte(out), &members); err != nil {
		t.Fatalf("members -o json is not a JSON array of objects: %v\n%s", err, out)
	}
	if len(members) != 3 {
		t.Fatalf("%d members, want 3", len(members))
	}
	want := map[string]any{
		"id": 4.0, "role": "observer", "raft_addr": "10.0.0.4:7071", "api_addr": "", "leader": false,
		"applied_index": 30.0, "ready": false, "state": "catching-up", "lag": 12.0,
		"reason": "lag 12 above promotion threshold 5", "down_for_ms": 0.0,
	}
	if !reflect.DeepEqual(members[2], want) {
		t.Errorf("members[2] = %v\nwant %v", members[2], want)
	}
	if members[1]["down_for_ms"] != 12400.0 {
		t.Errorf("members[1].down_for_ms = %v, want 12400", members[1]["down_for_ms"])
	}
	// "members list" is the same.
	if out2, _, code := runKvctl(t, "", "--endpoints", f.addr, "members", "list", "-o", "json"); code != 0 || out2 != out {
		t.Errorf("members list -o json: code %d, output differs from members -o json:\n%s", code, out2)
	}
	// Types of every field, for scripts that decode into structs.
	for _, m := range members {
		for field, kind := range map[string]string{"id": "number", "role": "string", "raft_addr": "string",
			"api_addr": "string", "leader": "bool", "applied_index": "number", "ready": "bool",
			"state": "string", "lag": "number", "reason": "string", "down_for_ms": "number"} {
			var ok bool
			switch kind {
			case "number":
				_, ok = m[field].(float64)
			case "string":
				_, ok = m[field].(string)
			case "bool":
				_, ok = m[field].(bool)
			}
			if !ok {
				t.Errorf("member %v: field %q is %T, want a JSON %s", m["id"], field, m[field], kind)
			}
		}
	}
	if members[0]["role"] != "voter" || members[0]["leader"] != true {
		t.Errorf("members[0] = %v, want the voter leader", members[0])
	}
}

func TestStatus(t *testing.T) {
	f := newFakeKVD(t)
	out, _, code := runKvctl(t, "", "--endpoints", f.addr, "status")
	if code != 0 {
		t.Fatalf("status: code %d", code)
	}
	for _, line := range []string{"endpoint: " + f.addr, "id: 2", "role: voter", "state: ready", "ready: true",
		"leader_id: 1", "term: 5", "applied_index: 41", "raft_addr: 10.0.0.2:7071", "version: v0.1.0-test",
		"voters: 3", "observers: 1", "reason: -"} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("status output lacks %q:\n%s", line, out)
		}
	}
	if strings.Contains(out, "catch_up") {
		t.Errorf("a ready node shows catch-up progress:\n%s", out)
	}
	out, _, _ = runKvctl(t, "", "--endpoints", f.addr, "-o", "json", "status")
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if st["id"] != 2.0 || st["role"] != "voter" || st["ready"] != true || st["endpoint"] != f.addr ||
		st["applied_index"] != 41.0 {
		t.Errorf("status -o json = %v", st)
	}
}

func TestStatusCatchingUp(t *testing.T) {
	f := newFakeKVD(t)
	f.mu.Lock()
	f.status.Ready, f.status.State, f.status.AppliedIndex = false, "catching-up", 120
	f.status.CatchUpTarget, f.status.Reason = 450, "catching up"
	f.mu.Unlock()
	out, _, code := runKvctl(t, "", "--endpoints", f.addr, "status")
	if code != 0 {
		t.Fatalf("status: code %d", code)
	}
	for _, line := range []string{"state: catching-up", "reason: catching up", "catch_up: applied 120 of 450"} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("status output lacks %q:\n%s", line, out)
		}
	}
	out, _, _ = runKvctl(t, "", "--endpoints", f.addr, "status", "-o", "json")
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if st["reason"] != "catching up" || st["catch_up_target"] != 450.0 || st["applied_index"] != 120.0 {
		t.Errorf("status -o json = %v", st)
	}
}
