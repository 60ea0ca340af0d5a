package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kvd-project/kvd/kvtest"
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
