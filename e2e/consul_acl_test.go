package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// With Consul's ACLs on and denying by default, as a production Consul
// runs, kvd registers and finds its peers with the token CONSUL_HTTP_TOKEN
// gives it. A node without a token is refused: it says which token it
// needs, and it gets into neither the catalog nor the cluster.
func TestConsulACLToken(t *testing.T) {
	const management = "6f8a2f4e-1b7c-4d2e-9a0b-3c5d7e9f1a2b"
	a := startConsulWith(t, management, "-hcl",
		`acl { enabled = true default_policy = "deny" tokens { initial_management = "`+management+`" agent = "`+management+`" } }`)
	pol, _, err := a.api.ACL().PolicyCreate(&api.ACLPolicy{Name: "kvd",
		Rules: `service "` + consulService + `" { policy = "write" } service_prefix "" { policy = "read" } node_prefix "" { policy = "read" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := a.api.ACL().TokenCreate(&api.ACLToken{Description: "kvd", Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	procs := make([]*proc, 3)
	for i := range procs {
		procs[i] = newConsulNode(t, a, fmt.Sprintf("kvd%d", i+1))
		procs[i].env = append(procs[i].env, "CONSUL_HTTP_TOKEN="+tok.SecretID)
		procs[i].start()
	}
	for _, p := range procs {
		waitServing(t, p, 60*time.Second)
	}
	ms := waitShape(t, procs[0], 3, 0, 60*time.Second)
	a.waitRegistered(ms, true, 15*time.Second)

	stranger := newConsulNode(t, a, "kvd-stranger")
	stranger.start()
	deadline := time.Now().Add(15 * time.Second)
	// Both of its Consul calls say so: registering (refused: 403) and
	// listing peers (Consul answers an empty list).
	for strings.Count(stranger.logs(), "CONSUL_HTTP_TOKEN") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("a node without a token did not say, registering and listing peers, which token it needs within 15s; its log:\n%s", stranger.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // its registration loop retries every second
	entries, err := a.instances()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Service != nil && strings.HasSuffix(e.Service.ID, stranger.api) {
			t.Fatalf("the node without a token is in the catalog: %s", e.Service.ID)
		}
	}
	if readyz(stranger) == 200 {
		t.Fatal("the node without a token is ready")
	}
	if got := waitShape(t, procs[0], 3, 0, 5*time.Second); len(got.Members) != 3 {
		t.Fatalf("the cluster changed:%s", describe(got))
	}
}
