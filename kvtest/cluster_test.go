package kvtest_test

import (
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/kvtest"
)

// A static 3-node cluster: a write on one node is read linearizably on
// another; the leader stops, writes go on, it restarts and catches up with
// every acknowledged write.
func TestThreeNodeCluster(t *testing.T) {
	c := kvtest.NewCluster(t, 3)
	rev := c.Put(0, "greeting", "hello")
	if rev == 0 {
		t.Fatal("put returned revision 0")
	}
	for i := 0; i < 3; i++ {
		got, err := c.Get(i, "greeting", false)
		if err != nil || got != "hello" {
			t.Fatalf("node %d: linearizable get = %q, %v; want hello", i+1, got, err)
		}
	}

	leader := c.Leader()
	c.Stop(leader)
	other := (leader + 1) % 3
	acked := map[string]string{"greeting": "hello"}
	for k := 0; k < 50; k++ {
		key, val := fmt.Sprintf("k%03d", k), fmt.Sprintf("v%d", k)
		c.Put(other, key, val)
		acked[key] = val
	}
	c.Start(leader)
	c.WaitReady(30e9)
	for key, val := range acked {
		got, err := c.Get(leader, key, true)
		if err != nil || got != val {
			t.Fatalf("restarted node %d: serializable get %q = %q, %v; want %q", leader+1, key, got, err, val)
		}
	}
	if _, err := c.Get(leader, "missing", false); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("get missing key: %v, want NotFound", err)
	}
}
