// Package registry keeps this node's entry in Consul's catalog and reads
// its peers from there (--discover consul:SERVICE).
//
// The registry only helps nodes find each other: membership stays in Raft.
// A node registers itself as soon as its API port is bound (role joining,
// its pending ID while forming), keeps the entry's meta current (role,
// readiness, replica and cluster IDs) and registers again when Consul lost
// it (an agent restarted). Consul's HTTP check on /readyz makes a catching-up
// or dead node critical. Nothing here is needed to restart: a node with local
// state never asks the registry, and one without waits for it.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Config of a Consul registry.
type Config struct {
	Service string // the service every node of one cluster registers as
	// Addr is Consul's HTTP API: host:port or http(s)://host:port. Empty:
	// Consul's own environment (CONSUL_HTTP_ADDR, else 127.0.0.1:8500).
	// CONSUL_HTTP_TOKEN, CONSUL_CACERT, CONSUL_CLIENT_CERT/KEY and
	// CONSUL_HTTP_SSL apply as they do to the consul CLI.
	Addr string
	// DeregisterAfter: Consul drops an instance critical this long
	// (Consul's minimum is one minute).
	DeregisterAfter time.Duration
	// CheckTLS: the node serves its API over TLS; the check uses https.
	CheckTLS bool
	// Interval between checks that the entry is current (and of Consul's
	// HTTP check). Default 1s.
	Interval time.Duration
	Logger   *slog.Logger
}

// Consul is a registry in a Consul agent.
type Consul struct {
	cfg    Config
	client *api.Client
	log    *slog.Logger
	token  bool // a token was given (CONSUL_HTTP_TOKEN or _FILE)
}

// ParseSpec returns SERVICE from a --discover value consul:SERVICE; ok is
// false when spec is not a consul one.
func ParseSpec(spec string) (service string, ok bool, err error) {
	kind, rest, found := strings.Cut(spec, ":")
	if !found || kind != "consul" {
		return "", false, nil
	}
	if rest == "" || strings.ContainsAny(rest, ":/ ") {
		return "", true, fmt.Errorf("--discover %q: want consul:SERVICE, SERVICE a Consul service name such as kvd", spec)
	}
	return rest, true, nil
}

// New makes a client for Consul's API; it does not contact Consul.
func New(cfg Config) (*Consul, error) {
	if cfg.Service == "" {
		return nil, fmt.Errorf("registry: no service name")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.DeregisterAfter <= 0 {
		cfg.DeregisterAfter = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ac := api.DefaultConfig()
	if cfg.Addr != "" {
		ac.Address = cfg.Addr
		if u, err := url.Parse(cfg.Addr); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			ac.Address, ac.Scheme = u.Host, u.Scheme
		}
	}
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("registry: consul client for %s: %w", ac.Address, err)
	}
	return &Consul{cfg: cfg, client: client, log: cfg.Logger.With("component", "registry", "consul", ac.Address),
		token: ac.Token != "" || ac.TokenFile != ""}, nil
}

// String is the --discover value.
func (c *Consul) String() string { return "consul:" + c.cfg.Service }

// Instance is what a node publishes about itself.
type Instance struct {
	APIAddr   string // advertised host:port
	RaftAddr  string
	ReplicaID uint64 // 0 = not known yet
	Role      string // RoleJoining until the node runs, then its membership.Role: observer | voter
	Ready     bool
	State     string
	ClusterID string // "" until known
}

// RoleJoining is an instance's role until its node runs (its role in the
// membership is not known yet): a new node joining or forming, or one
// restarting from its local state.
const RoleJoining = "joining"

// serviceID names a node's entry by its API address: stable across
// restarts and a --rejoin (a new replica ID at the same address replaces
// the old entry instead of leaving it behind).
func (c *Consul) serviceID(apiAddr string) string { return c.cfg.Service + "-" + apiAddr }

func (c *Consul) registration(in Instance) (*api.AgentServiceRegistration, error) {
	host, portStr, err := net.SplitHostPort(in.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("registry: API address %q: %w", in.APIAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("registry: API address %q: port: %w", in.APIAddr, err)
	}
	replica := ""
	if in.ReplicaID != 0 {
		replica = strconv.FormatUint(in.ReplicaID, 10)
	}
	scheme, status := "http", api.HealthCritical
	if c.cfg.CheckTLS {
		scheme = "https"
	}
	if in.Ready {
		status = api.HealthPassing
	}
	return &api.AgentServiceRegistration{
		ID:      c.serviceID(in.APIAddr),
		Name:    c.cfg.Service,
		Address: host,
		Port:    port,
		Meta: map[string]string{
			MetaReplicaID: replica, MetaRaftAddr: in.RaftAddr, MetaRole: in.Role,
			MetaReady: strconv.FormatBool(in.Ready), MetaClusterID: in.ClusterID, MetaState: in.State,
		},
		Check: &api.AgentServiceCheck{
			Name: "kvd readiness (/readyz)",
			HTTP: scheme + "://" + in.APIAddr + "/readyz",
			// The check only reads readiness; the agent does not hold the
			// cluster CA (with --client-cert-auth it needs a client
			// certificate: see the README).
			TLSSkipVerify:                  c.cfg.CheckTLS,
			Interval:                       c.cfg.Interval.String(),
			Timeout:                        c.cfg.Interval.String(),
			Status:                         status,
			DeregisterCriticalServiceAfter: c.cfg.DeregisterAfter.String(),
		},
	}, nil
}

// Meta keys of an entry.
const (
	MetaReplicaID = "replica_id"
	MetaRaftAddr  = "raft_addr"
	MetaRole      = "role"
	MetaReady     = "ready"
	MetaClusterID = "cluster_id"
	MetaState     = "state"
)

// Run keeps this node's entry current until ctx ends: it registers self()
// when it changed, and again when the agent no longer has it (checked
// every Interval). Consul being down is logged (at the first failure and
// when it recovers), never fatal.
func (c *Consul) Run(ctx context.Context, self func() Instance) {
	var last Instance
	registered, failing := false, false
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		in := self()
		err := c.sync(ctx, in, last, registered)
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				c.log.Warn("cannot register in Consul; the node runs without it and retries", "err", err)
			}
			failing, registered = true, false
		case err == nil:
			if failing {
				c.log.Info("registered in Consul again")
			}
			failing, registered, last = false, true, in
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sync registers in unless the agent already holds it unchanged.
func (c *Consul) sync(ctx context.Context, in, last Instance, registered bool) error {
	id := c.serviceID(in.APIAddr)
	if registered && in == last {
		_, _, err := c.client.Agent().Service(id, (&api.QueryOptions{}).WithContext(ctx))
		if err == nil {
			return nil
		}
		if !notFound(err) {
			return err
		}
		c.log.Info("Consul lost this node's entry; registering again", "service_id", id)
	}
	reg, err := c.registration(in)
	if err != nil {
		return err
	}
	if err := c.client.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return c.explainACL(err)
	}
	c.log.Debug("registered", "service_id", id, "role", in.Role, "ready", in.Ready, "cluster_id", in.ClusterID)
	return nil
}

// explainACL adds what to do to Consul's answer when its ACLs refused a
// call (403): the bare "Permission denied" names neither the token nor
// the rights kvd needs.
func (c *Consul) explainACL(err error) error {
	var se api.StatusError
	if errors.As(err, &se) && se.Code == 403 || strings.Contains(err.Error(), "Unexpected response code: 403") {
		return fmt.Errorf("%w: Consul's ACLs refused it; %s", err, c.aclHint())
	}
	return err
}

// aclHint says which token kvd needs.
func (c *Consul) aclHint() string {
	return fmt.Sprintf("give kvd a token in CONSUL_HTTP_TOKEN (or CONSUL_HTTP_TOKEN_FILE) with service:write on %q and read on nodes and services", c.cfg.Service)
}

func notFound(err error) bool {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code == 404
	}
	return strings.Contains(err.Error(), "Unexpected response code: 404")
}

// Deregister removes this node's entry (it left the cluster or was removed).
func (c *Consul) Deregister(ctx context.Context, apiAddr string) error {
	id := c.serviceID(apiAddr)
	err := c.client.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil && !notFound(err) {
		return fmt.Errorf("registry: deregister %s: %w", id, err)
	}
	c.log.Info("deregistered from Consul", "service_id", id)
	return nil
}
