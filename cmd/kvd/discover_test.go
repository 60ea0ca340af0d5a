package main

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
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
