package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-project/kvd/kvtest"
)

// The grpc-go target writes to a real 3-node cluster through one node and
// reads the value back through every node, linearizable and serializable;
// a missing key is not found, not an error.
func TestGRPCGoTarget(t *testing.T) {
	c := kvtest.NewCluster(t, 3)
	for _, consistency := range []string{"linearizable", "serializable"} {
		o := dialOptions{Endpoints: c.Endpoints(), Protocol: protocolGRPCGo, Consistency: consistency, Spread: true, Timeout: 5 * time.Second}
		if err := o.validate(); err != nil {
			t.Fatal(err)
		}
		targets, closeAll, err := newTargets(o)
		if err != nil {
			t.Fatal(err)
		}
		defer closeAll()
		if len(targets) != 3 {
			t.Fatalf("%d targets, want one per node", len(targets))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		key := []byte("grpc-go-" + consistency)
		// The stubs do not retry: ride out an election (the machine may be
		// busy enough, under -race, to lose the leader for a moment).
		for {
			err := targets[1].Put(ctx, key, []byte("v"))
			if err == nil {
				break
			}
			if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
				t.Fatalf("put through node 1: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for i, tg := range targets {
			// A serializable read may trail the write on a follower.
			var found bool
			for deadline := time.Now().Add(5 * time.Second); !found && time.Now().Before(deadline); {
				if found, err = tg.Get(ctx, key); status.Code(err) == codes.Unavailable {
					time.Sleep(50 * time.Millisecond)
					continue
				} else if err != nil {
					t.Fatalf("%s get through node %d: %v", consistency, i, err)
				}
				if !found && consistency == "linearizable" {
					break
				}
			}
			if !found {
				t.Errorf("%s get through node %d: not found after the put", consistency, i)
			}
		}
		if found, err := targets[0].Get(ctx, []byte("grpc-go-missing")); found || err != nil {
			t.Errorf("missing key: found %v, error %v; want not found and no error", found, err)
		}
		if got, _ := c.Get(0, string(key), false); got != "v" {
			t.Errorf("the Connect API reads %q, want %q", got, "v")
		}
	}

	// The whole run, on one node (no election can fail calls of a run that
	// does not retry): puts, then gets of preloaded keys, labelled grpc-go.
	c.Close()
	c = kvtest.NewCluster(t, 1)
	out, err := runApp(t, "--endpoints", strings.Join(c.Endpoints(), ","), "--spread", "--protocol", "grpc-go",
		"--clients", "6", "--ops", "300", "--warmup", "0s", "--keyspace", "50", "--json")
	if err != nil {
		t.Fatal(err)
	}
	r := decodeResults(t, out)[0]
	if r.Ops != 300 || r.Errors != 0 || r.Op != "put" || r.Protocol != "grpc-go" || r.Transport != "h2c" {
		t.Fatalf("grpc-go puts: %+v (first error: %s)", r, r.FirstError)
	}
	out, err = runApp(t, "--endpoints", strings.Join(c.Endpoints(), ","), "--spread", "--protocol", "grpc-go",
		"--clients", "6", "--ops", "300", "--warmup", "0s", "--keyspace", "50", "--preload", "--read-ratio", "1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	r = decodeResults(t, out)[0]
	if r.Ops != 300 || r.Errors != 0 || r.NotFound != 0 || r.Op != "get" || r.Consistency != "linearizable" || r.Protocol != "grpc-go" {
		t.Fatalf("grpc-go gets: %+v (first error: %s)", r, r.FirstError)
	}
}
