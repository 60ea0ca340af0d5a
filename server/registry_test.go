package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/node"
	"github.com/kvd-project/kvd/registry"
)

// fakeRegistry records what the server publishes and whether it left.
type fakeRegistry struct {
	mu           sync.Mutex
	seen         []registry.Instance
	running      bool
	deregistered string
}

func (f *fakeRegistry) Run(ctx context.Context, self func() registry.Instance) {
	f.set(func() { f.running = true })
	defer f.set(func() { f.running = false })
	for {
		in := self()
		f.set(func() { f.seen = append(f.seen, in) })
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (f *fakeRegistry) Deregister(_ context.Context, apiAddr string) error {
	f.set(func() { f.deregistered = apiAddr })
	return nil
}

func (f *fakeRegistry) set(do func()) { f.mu.Lock(); do(); f.mu.Unlock() }

func (f *fakeRegistry) last() (registry.Instance, bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		return registry.Instance{}, f.running, f.deregistered
	}
	return f.seen[len(f.seen)-1], f.running, f.deregistered
}

// The entry follows the node (a single voter: ready, with a cluster ID);
// Stop ends the loop and keeps the entry: after a plain stop, and when
// leaving fails (the only voter cannot leave), the node is still a member.
// kvtest's TestLeavingNodeDropsItsEntry covers a leave that succeeds.
func TestRegistryFollowsTheNode(t *testing.T) {
	for _, leave := range []bool{false, true} {
		reg := new(fakeRegistry)
		p := newPKI(t)
		cert, key := p.issue("node")
		s, _ := startTLS(t, p, cert, key, func(c *Config) { c.Registry = reg; c.LeaveOnExit = leave; c.Node.APIAddr = "" })
		deadline := time.Now().Add(20 * time.Second)
		for {
			in, _, _ := reg.last()
			if in.Role == "voter" && in.Ready && in.ClusterID != "" && in.ReplicaID != 0 && in.APIAddr == s.Addr() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("registry never saw a ready voter with a cluster ID; last %+v", in)
			}
			time.Sleep(10 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.Stop(ctx)
		cancel()
		_, running, gone := reg.last()
		if running {
			t.Fatal("the registration loop outlives Stop")
		}
		if gone != "" {
			t.Fatalf("leave-on-exit=%v: a node that is still a member deregistered %q", leave, gone)
		}
	}
}

// Before the node runs, the entry says joining and carries the ID the node
// will run as: the saved identity's on a restart (not --node-id, which may
// name the ID it replaced), the pending ID while forming, else --node-id.
func TestInstanceBeforeStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		saved   membership.ReplicaID // identity.json; 0: none
		removed bool                 // removed.json
		flag    membership.ReplicaID // --node-id
		forming membership.ReplicaID // pending ID published while forming
		want    uint64
	}{
		{name: "new node, ID not chosen", want: 0},
		{name: "new node with --node-id", flag: 3, want: 3},
		{name: "restart from local state", saved: 1<<21 + 5, want: 1<<21 + 5},
		{name: "restart, --node-id names the replaced ID", saved: 7, flag: 3, want: 7},
		{name: "removed: the saved ID is not its own", saved: 7, removed: true, want: 0},
		{name: "forming", forming: 9, want: 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := node.Config{DataDir: t.TempDir(), ReplicaID: tc.flag}
			if tc.saved != 0 {
				id := membership.Identity{ReplicaID: tc.saved, Origin: membership.OriginJoin, RaftAddr: "127.0.0.1:1"}
				if err := membership.SaveIdentity(cfg.DataDir, id); err != nil {
					t.Fatal(err)
				}
			}
			if tc.removed {
				if err := membership.MarkRemoved(cfg.DataDir, tc.saved); err != nil {
					t.Fatal(err)
				}
			}
			formation := new(membership.Formation)
			formation.Set(membership.PeerIdentity{Peer: membership.Peer{ID: tc.forming}})
			before := registry.Instance{APIAddr: "n1:7070", Role: registry.RoleJoining, ReplicaID: uint64(knownReplicaID(cfg))}
			in := instance(before, formation, nil)
			if in.ReplicaID != tc.want || in.Role != "joining" || in.APIAddr != "n1:7070" {
				t.Fatalf("instance %+v, want replica %d, role joining", in, tc.want)
			}
		})
	}
}
