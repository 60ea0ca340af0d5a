package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/server"
)

// parseErr is parse for flags that must be refused.
func parseErr(t *testing.T, args ...string) error {
	t.Helper()
	app := newApp()
	app.Action = func(c *cli.Context) error { _, err := configFrom(c); return err }
	return app.Run(append([]string{"kvd"}, args...))
}

func TestDiscoverConsulRegistersTheNode(t *testing.T) {
	cfg := parse(t, "--discover", "consul:kvd", "--consul-addr", "127.0.0.1:1", "--bootstrap-expect", "3")
	if cfg.Registry == nil {
		t.Fatal("--discover consul: gave no registry")
	}
	if cfg.Node.Seeds == nil {
		t.Fatal("--discover consul: gave no seeds")
	}
	// Consul is not there: no peers, and the node waits instead of failing.
	if peers := cfg.Node.Seeds(); len(peers) != 0 {
		t.Fatalf("peers from an unreachable Consul: %v", peers)
	}
	if cfg := parse(t, "--discover", "dns:localhost"); cfg.Registry != nil {
		t.Fatal("DNS discovery made a registry")
	}
}

func TestDiscoverRefusesBadValues(t *testing.T) {
	for args, want := range map[string]string{
		"--discover consul:": "want consul:SERVICE",
		"--discover etcd:x":  "or consul:SERVICE",
		"--discover consul:kvd --consul-deregister-after 10s": "minimum is 1m",
	} {
		err := parseErr(t, strings.Fields(args)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want one containing %q", args, err, want)
		}
	}
}

func TestAdvertiseDefaults(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		listen, raft, wantAPI, wantRaft string
	}{
		{"127.0.0.1:7070", "127.0.0.1:7170", "127.0.0.1:7070", "127.0.0.1:7170"},
		{"0.0.0.0:7070", "0.0.0.0:7170", host + ":7070", host + ":7170"},
		{":7070", "[::]:7170", host + ":7070", host + ":7170"},
		{"127.0.0.1:0", "127.0.0.1:7170", "", "127.0.0.1:7170"}, // the server fills in the bound port
	} {
		cfg := server.DefaultConfig()
		cfg.Listen, cfg.Node.APIAddr = tc.listen, ""
		cfg.Node.RaftListen, cfg.Node.RaftAddr = tc.raft, tc.raft
		if err := advertiseDefaults(&cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.Node.APIAddr != tc.wantAPI || cfg.Node.RaftAddr != tc.wantRaft {
			t.Errorf("listen %s raft %s: advertises %q and %q, want %q and %q",
				tc.listen, tc.raft, cfg.Node.APIAddr, cfg.Node.RaftAddr, tc.wantAPI, tc.wantRaft)
		}
	}
}

// staticSource is a discovery source that always answers the same.
type staticSource []string

func (s staticSource) Peers(context.Context) ([]string, error) { return s, nil }
func (s staticSource) String() string                          { return "static" }

func TestSeedSourceLeavesThisNodeOut(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Node.APIAddr = "0.0.0.0:7070", "me.example:7070"
	seeds, err := seedSource("a:7070, b:7070,,me.example:7070", staticSource{"127.0.0.1:7070", "c:7070", "127.0.0.1:7071"}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(seeds(), ",")
	if want := "a:7070,b:7070,c:7070,127.0.0.1:7071"; got != want {
		t.Fatalf("seeds %s, want %s (this node's own addresses left out)", got, want)
	}
	if seeds, _ := seedSource("", nil, cfg); seeds != nil {
		t.Fatal("no --join and no --discover gave a seed function")
	}
}
