package kvtest

import (
	"testing"
	"time"
)

// Every member, a joiner included, learns one cluster ID, and a restart
// keeps it (it lives in the replicated metadata).
func TestOneClusterIDOnEveryMember(t *testing.T) {
	c := NewCluster(t, 3)
	c.WaitReady(30 * time.Second)
	j := c.Join()
	c.WaitReady(30 * time.Second)
	id := waitClusterID(t, c, 0)
	for i := 1; i < c.Size(); i++ {
		if got := waitClusterID(t, c, i); got != id {
			t.Fatalf("member %d has cluster ID %q, member 0 %q", i, got, id)
		}
	}
	c.Stop(j)
	c.Start(j)
	c.WaitReady(30 * time.Second)
	if got := waitClusterID(t, c, j); got != id {
		t.Fatalf("after a restart the joiner has cluster ID %q, want %q", got, id)
	}
	other := NewCluster(t, 1)
	other.WaitReady(30 * time.Second)
	if got := waitClusterID(t, other, 0); got == id {
		t.Fatalf("two clusters share the ID %q", id)
	}
}

func waitClusterID(t *testing.T, c *Cluster, i int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if id := c.Server(i).Node().ClusterID(); id != "" {
			return id
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("member %d never learned the cluster ID", i)
	return ""
}
