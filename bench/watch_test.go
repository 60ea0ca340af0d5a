package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kvd-project/kvd/client"
	"github.com/kvd-project/kvd/kvtest"
	"github.com/kvd-project/kvd/server"
)

// TestWatchersAgainstCluster runs the generator with watchers on a real
// in-process cluster: first with no observer (--watch-observers is
// refused), then on all members and on the observer only.
func TestWatchersAgainstCluster(t *testing.T) {
	oneVoter := func(cfg *server.Config) { cfg.Node.Policy.Voters = 1 }
	c := kvtest.NewCluster(t, 1, oneVoter)
	c.WaitReady(30 * time.Second)
	run := func(extra ...string) (string, error) {
		return runApp(t, append([]string{"--endpoints", c.Endpoint(0), "--clients", "4", "--duration", "1s",
			"--warmup", "200ms", "--json", "--watchers", "3"}, extra...)...)
	}
	if _, err := run("--watch-observers"); err == nil || !strings.Contains(err.Error(), "no member to watch on") {
		t.Fatalf("--watch-observers without observers: %v", err)
	}
	c.Join(oneVoter)
	waitObserver(t, c.Endpoint(0))
	for _, on := range []string{"all", "observers"} {
		var extra []string
		if on == "observers" {
			extra = append(extra, "--watch-observers")
		}
		out, err := run(extra...)
		if err != nil {
			t.Fatal(err)
		}
		r := decodeResults(t, out)[0]
		if r.Watchers != 3 || r.WatchOn != on || r.WatchMissed != 0 || r.WatchEventsPerSec < 2*r.OpsPerSec ||
			r.WatchSentP50Ms <= 0 || r.WatchP99Ms < r.WatchP50Ms {
			t.Fatalf("watchers on %s: %+v", on, r)
		}
	}
}

// waitObserver waits until the cluster lists an observer with its API
// address (published once it has caught up).
func waitObserver(t *testing.T, endpoint string) {
	t.Helper()
	cl, err := client.New(client.Config{Endpoints: []string{endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ms, err := cl.Members(context.Background())
		if err == nil {
			for _, m := range ms.Members {
				if m.Role == client.RoleObserver && m.APIAddr != "" {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no observer with an API address within 30s")
}
