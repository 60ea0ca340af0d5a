package kvtest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/registry"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
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

// A member removed through another node (kvctl members remove) learns it
// was removed, stops (as kvd does on Done) and drops its registry entry:
// it is no member, and a newcomer must not take it for one.
func TestRemovedNodeDropsItsEntry(t *testing.T) {
	c := NewCluster(t, 3)
	reg := new(dropRegistry)
	j := c.Join(func(cfg *server.Config) { cfg.Registry = reg })
	c.WaitReady(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id := uint64(c.Server(j).Node().ID())
	if _, err := c.ClusterClient(0).Remove(ctx, connect.NewRequest(&kvdv1.RemoveRequest{Id: id})); err != nil {
		t.Fatalf("remove replica %d through node 1: %v", id, err)
	}
	select {
	case err := <-c.Server(j).Done():
		t.Logf("the removed node ends: %v", err)
	case <-ctx.Done():
		t.Fatal("the removed node never ended (Done)")
	}
	c.Stop(j)
	if gone := reg.gone.Load(); gone == nil || *gone != c.Endpoint(j) {
		t.Fatalf("the removed node deregistered %v, want %s", gone, c.Endpoint(j))
	}
}
