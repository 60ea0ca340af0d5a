package kvtest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvd-project/kvd/registry"
	"github.com/kvd-project/kvd/server"
)

// dropRegistry records the address a node deregistered.
type dropRegistry struct{ gone atomic.Pointer[string] }

func (d *dropRegistry) Run(ctx context.Context, _ func() registry.Instance) { <-ctx.Done() }
func (d *dropRegistry) Deregister(_ context.Context, apiAddr string) error {
	d.gone.Store(&apiAddr)
	return nil
}

// A node that leaves the cluster (--leave-on-exit) drops its registry
// entry; one that just stops keeps it (TestRegistryFollowsTheNode).
func TestLeavingNodeDropsItsEntry(t *testing.T) {
	c := NewCluster(t, 3)
	c.WaitReady(30 * time.Second)
	reg := new(dropRegistry)
	j := c.Join(func(cfg *server.Config) { cfg.Registry = reg; cfg.LeaveOnExit = true })
	c.WaitReady(30 * time.Second)
	c.Stop(j)
	if gone := reg.gone.Load(); gone == nil || *gone != c.Endpoint(j) {
		t.Fatalf("the leaving node deregistered %v, want %s", gone, c.Endpoint(j))
	}
}
