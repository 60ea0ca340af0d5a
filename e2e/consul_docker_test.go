package e2e

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// docker/compose.consul.yaml (over compose.yaml and compose.tls.yaml): five
// nodes find each other through a Consul container and form 3 voters + 2
// observers, which Consul's catalog shows as they are, read from the host
// through Consul's published port and with the consul CLI in its image.
func TestDockerConsulCluster(t *testing.T) {
	c := startCluster(t, "consul", 5, withConsul)
	ms := c.waitMembers(3, 2, 30*time.Second)
	fields := strings.Fields(c.compose(30*time.Second, "port", "consul", "8500"))
	published := fields[len(fields)-1] // 0.0.0.0:PORT, after any warnings
	_, port, err := net.SplitHostPort(published)
	if err != nil {
		t.Fatalf("docker compose port consul 8500: %q: %v", published, err)
	}
	cat := newCatalog(t, "127.0.0.1:"+port, "")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- consul catalog of %s at the failure ----%s", consulService, cat.describe())
		}
	})
	cat.waitRegistered(ms, true, 30*time.Second)
	if out := c.compose(30*time.Second, "exec", "-T", "consul", "consul", "catalog", "services"); !slices.Contains(strings.Fields(out), consulService) {
		t.Fatalf("consul catalog services in the container does not list %s:\n%s", consulService, out)
	}
}
