package registry

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
)

// Entry is one instance of the service as the catalog shows it.
type Entry struct {
	APIAddr   string
	Passing   bool // every check passing
	ClusterID string
	ReplicaID string
}

// Peers lists the API addresses of the service's instances, healthy ones
// first; instances that are not healthy yet are included (nodes forming a
// cluster are all critical until they have formed it). Stale entries are
// left out: see Order.
func (c *Consul) Peers(ctx context.Context) ([]string, error) {
	entries, meta, err := c.client.Health().Service(c.cfg.Service, "", false, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul: list instances of %q: %w", c.cfg.Service, c.explainACL(err))
	}
	// Consul answers a read its ACLs deny with an empty list, not an error:
	// flagged as filtered when only some entries were hidden, not at all
	// when the whole service was.
	if len(entries) == 0 && meta != nil && (meta.ResultsFilteredByACLs || meta.DefaultACLPolicy == "deny" && !c.token) {
		return nil, fmt.Errorf("consul: list instances of %q: Consul's ACLs deny by default and may hide them; %s", c.cfg.Service, c.aclHint())
	}
	list := make([]Entry, 0, len(entries))
	for _, e := range entries {
		if e.Service == nil {
			continue
		}
		host := e.Service.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		list = append(list, Entry{
			APIAddr:   net.JoinHostPort(host, strconv.Itoa(e.Service.Port)),
			Passing:   e.Checks.AggregatedStatus() == api.HealthPassing,
			ClusterID: e.Service.Meta[MetaClusterID],
			ReplicaID: e.Service.Meta[MetaReplicaID],
		})
	}
	return Order(list)
}

// Order decides which instances a node may ask, in order. The running
// cluster is the cluster ID its healthy instances carry: every instance
// naming another cluster is stale (a cluster that was wiped, or one that
// registered under this service by mistake) and left out. When healthy
// instances name two clusters, the node cannot tell which to join: Order
// refuses rather than risk joining the wrong one. Healthy instances come
// first, then the rest (forming nodes, catching-up observers, dead ones:
// a dead one just does not answer).
//
// With no healthy instance nothing can be told stale, and nothing is left
// out, on purpose. That is a cold start (nodes forming are critical until
// they have formed), and also a whole cluster restarting or without a
// quorum (every instance critical until it is ready again). Leaving out
// the instances that name a cluster would then let a new node bootstrap a
// second cluster beside the real one; kept, a node that answers as part of
// a running cluster makes it join (membership.DecideFormation). The price:
// in that window a live node of another cluster registered under this
// service (a survivor of a wiped cluster, or a misconfigured one) can be
// the one it joins, or tries to. Give every cluster its own service name,
// and take a wiped cluster's survivors out of the catalog.
func Order(entries []Entry) ([]string, error) {
	running := map[string]bool{}
	for _, e := range entries {
		if e.Passing && e.ClusterID != "" {
			running[e.ClusterID] = true
		}
	}
	if len(running) > 1 {
		ids := make([]string, 0, len(running))
		for id := range running {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		return nil, fmt.Errorf("healthy instances belong to %d clusters (%s): give each cluster its own service name", len(ids), strings.Join(ids, ", "))
	}
	var keep []Entry
	for _, e := range entries {
		if len(running) == 1 && e.ClusterID != "" && !running[e.ClusterID] {
			continue
		}
		keep = append(keep, e)
	}
	sort.SliceStable(keep, func(i, j int) bool {
		if keep[i].Passing != keep[j].Passing {
			return keep[i].Passing
		}
		return keep[i].APIAddr < keep[j].APIAddr
	})
	out := make([]string, len(keep))
	for i, e := range keep {
		out[i] = e.APIAddr
	}
	return out, nil
}
