package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/discovery"
	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/registry"
	"github.com/kvd-project/kvd/server"
	"github.com/kvd-project/kvd/statemachine"
)

func newApp() *cli.App {
	d := server.DefaultConfig()
	return &cli.App{
		Name:  "kvd",
		Usage: "replicated key-value database server",
		Description: "With no flags, kvd runs a single-voter cluster: data in ./kvd-data, API on 127.0.0.1:7070,\n" +
			"Raft on 127.0.0.1:7170. Run the same command again to restart it with its data.\n" +
			"Static cluster: give every node the same --initial-members and its own --node-id.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: d.Node.DataDir, EnvVars: []string{"KVD_DATA_DIR"}, Usage: "directory for the node's identity, Raft log and data"},
			&cli.StringFlag{Name: "listen", Value: d.Listen, EnvVars: []string{"KVD_LISTEN"}, Usage: "API listen address (Connect, gRPC, gRPC-Web, HTTP/JSON; /healthz /readyz /metrics)"},
			&cli.StringFlag{Name: "advertise-addr", EnvVars: []string{"KVD_ADVERTISE_ADDR"}, Usage: "API address other nodes and clients use (default: the listen address)"},
			&cli.StringFlag{Name: "raft-addr", Value: d.Node.RaftAddr, EnvVars: []string{"KVD_RAFT_ADDR"}, Usage: "Raft bind address (host:port)"},
			&cli.StringFlag{Name: "advertise-raft-addr", EnvVars: []string{"KVD_ADVERTISE_RAFT_ADDR"}, Usage: "Raft address peers dial (default: --raft-addr)"},
			&cli.Uint64Flag{Name: "node-id", EnvVars: []string{"KVD_NODE_ID"}, Usage: "replica ID (default: from the data dir, or from --initial-members by raft address, random when joining, or 1)"},
			&cli.StringFlag{Name: "initial-members", EnvVars: []string{"KVD_INITIAL_MEMBERS"}, Usage: "bootstrap these voters: 1=host:port,2=host:port,... (Raft addresses)"},
			&cli.StringFlag{Name: "join", EnvVars: []string{"KVD_JOIN"}, Usage: "join a running cluster through any of these members' API addresses (host:port,...) as an observer; it promotes itself while voters < --voters. Give it to static members too: with an empty data dir they ask these members whether their ID has run before (a lost disk)"},
			&cli.StringFlag{Name: "discover", EnvVars: []string{"KVD_DISCOVER"}, Usage: "find peers' API addresses by DNS: dns:NAME[:PORT] (A/AAAA) or dns+srv:NAME, re-resolved while waiting; or in Consul: consul:SERVICE, where the node also registers itself (role, readiness, IDs, a /readyz check)"},
			&cli.StringFlag{Name: "consul-addr", EnvVars: []string{"KVD_CONSUL_ADDR"}, Usage: "Consul's HTTP API for --discover consul:, host:port or http(s)://host:port (default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500; CONSUL_HTTP_TOKEN, CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY apply)"},
			&cli.DurationFlag{Name: "consul-deregister-after", Value: time.Hour, EnvVars: []string{"KVD_CONSUL_DEREGISTER_AFTER"}, Usage: "Consul drops this node's entry after its check stayed critical this long (at least 1m)"},
			&cli.IntFlag{Name: "bootstrap-expect", EnvVars: []string{"KVD_BOOTSTRAP_EXPECT"}, Usage: "with --discover and no state anywhere: once this many nodes see each other they bootstrap together (the lowest IDs); the rest join"},
			&cli.StringFlag{Name: "join-secret", EnvVars: []string{"KVD_JOIN_SECRET"}, Usage: "cluster secret required to join, promote or remove members (same on every node)"},
			&cli.StringFlag{Name: "cert-file", EnvVars: []string{"KVD_CERT_FILE"}, Usage: "this node's certificate (PEM): the API then serves only TLS, Raft uses mutual TLS, calls to peers use https (kvctl certs issue makes one)"},
			&cli.StringFlag{Name: "key-file", EnvVars: []string{"KVD_KEY_FILE"}, Usage: "the private key of --cert-file (PEM)"},
			&cli.StringFlag{Name: "trusted-ca-file", EnvVars: []string{"KVD_TRUSTED_CA_FILE"}, Usage: "the cluster CA (PEM) peers and client certificates are verified against; needed with --cert-file"},
			&cli.StringFlag{Name: "issue-cert-from-ca", EnvVars: []string{"KVD_ISSUE_CERT_FROM_CA"}, Usage: "DIR holding a cluster CA (ca.crt, ca.key from kvctl certs ca): at start the node issues itself a certificate for the names it advertises into DATA-DIR/tls (reused while it covers them) and trusts DIR/ca.crt; for nodes whose names are not known in advance (containers). Instead of --cert-file, --key-file, --trusted-ca-file"},
			&cli.BoolFlag{Name: "client-cert-auth", EnvVars: []string{"KVD_CLIENT_CERT_AUTH"}, Usage: "require a client certificate signed by --trusted-ca-file on the API; such a certificate may also change membership"},
			&cli.BoolFlag{Name: "insecure-open-membership", EnvVars: []string{"KVD_INSECURE_OPEN_MEMBERSHIP"}, Usage: "start on a non-loopback address with neither --join-secret nor --client-cert-auth: anyone who reaches the node can join, promote or remove members"},
			&cli.BoolFlag{Name: "rejoin", EnvVars: []string{"KVD_REJOIN"}, Usage: "if this node was removed, or its Raft state was lost, wipe its state, have its old ID removed and join again under a new ID (a static member given it never bootstraps: don't use it on a cluster's first start)"},
			&cli.BoolFlag{Name: "leave-on-exit", EnvVars: []string{"KVD_LEAVE_ON_EXIT"}, Usage: "on SIGTERM, hand over leadership and remove this node from the cluster"},
			&cli.IntFlag{Name: "voters", Value: d.Node.Policy.Voters, EnvVars: []string{"KVD_VOTERS"}, Usage: "voter target (odd): caught-up observers promote themselves up to it, and the leader retires voters above it (default: 3, or the number of --initial-members, made odd, when more)"},
			&cli.DurationFlag{Name: "promote-after", Value: d.Node.Policy.PromoteAfter, EnvVars: []string{"KVD_PROMOTE_AFTER"}, Usage: "an observer must stay caught up this long before promoting itself"},
			&cli.DurationFlag{Name: "dead-after", Value: d.Node.Policy.DeadAfter, EnvVars: []string{"KVD_DEAD_AFTER"}, Usage: "a voter that is unreachable, or answers but does not follow the leader's log, this long is replaced by an observer, then removed"},
			&cli.DurationFlag{Name: "rtt", Value: d.Node.RTT, EnvVars: []string{"KVD_RTT"}, Usage: "Raft tick; elections take 20-40 ticks, heartbeats every 2"},
			&cli.Uint64Flag{Name: "snapshot-entries", Value: d.Node.SnapshotEntries, EnvVars: []string{"KVD_SNAPSHOT_ENTRIES"}, Usage: "take a snapshot (and compact the log) every this many entries"},
			&cli.Uint64Flag{Name: "compaction-overhead", Value: d.Node.CompactionOverhead, EnvVars: []string{"KVD_COMPACTION_OVERHEAD"}, Usage: "entries kept behind a snapshot so that lagging replicas catch up from the log instead of a full snapshot stream"},
			&cli.IntFlag{Name: "watch-history", Value: statemachine.DefaultHistoryRevisions, EnvVars: []string{"KVD_WATCH_HISTORY"}, Usage: "revisions of change events kept for watchers (a watch may start this far back); -1 keeps none and refuses watches. Set the same on every node"},
			&cli.Int64Flag{Name: "watch-history-bytes", Value: statemachine.DefaultHistoryBytes, EnvVars: []string{"KVD_WATCH_HISTORY_BYTES"}, Usage: "cap on the change history's size in bytes (approximate: checked every 1024 events); older revisions go first; -1: no cap"},
			&cli.Int64Flag{Name: "snapshot-history-bytes", Value: statemachine.DefaultSnapshotHistoryBytes, EnvVars: []string{"KVD_SNAPSHOT_HISTORY_BYTES"}, Usage: "how much of the change history a snapshot sent to a joining or lagging node (or saved as a backup) carries: the newest whole revisions that fit; the receiver's history starts there; -1: all of it"},
			&cli.IntFlag{Name: "max-key-size", Value: d.Limits.MaxKeySize, EnvVars: []string{"KVD_MAX_KEY_SIZE"}, Usage: "largest key in bytes"},
			&cli.IntFlag{Name: "max-value-size", Value: d.Limits.MaxValueSize, EnvVars: []string{"KVD_MAX_VALUE_SIZE"}, Usage: "largest value in bytes"},
			&cli.IntFlag{Name: "max-range-limit", Value: d.Limits.MaxRangeLimit, EnvVars: []string{"KVD_MAX_RANGE_LIMIT"}, Usage: "most keys in one range response"},
			&cli.IntFlag{Name: "max-range-bytes", Value: d.Limits.MaxRangeBytes, EnvVars: []string{"KVD_MAX_RANGE_BYTES"}, Usage: "most bytes of keys and values in one range response (at least one key is sent; the rest follows with next_page_token) in one watch message (at least one event; a larger revision spans messages)"},
			&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"KVD_LOG_FORMAT"}, Usage: "text or json"},
			&cli.BoolFlag{Name: "enable-pprof", EnvVars: []string{"KVD_ENABLE_PPROF"}, Usage: "serve Go's runtime profiles under /debug/pprof/ on the API address (CPU, heap, goroutines; for diagnosing performance)"},
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"KVD_LOG_LEVEL"}, Usage: "debug, info, warn or error"},
			restoreFlag(),
		},
		Action: func(c *cli.Context) error {
			cfg, err := configFrom(c)
			if err != nil {
				return err
			}
			if err := prepareDataDir(c.Context, cfg, c.String("restore")); err != nil {
				return err
			}
			return run(c.Context, cfg)
		},
	}
}

func configFrom(c *cli.Context) (server.Config, error) {
	cfg := server.DefaultConfig()
	logger, err := newLogger(os.Stderr, c.String("log-format"), c.String("log-level"))
	if err != nil {
		return cfg, err
	}
	cfg.Logger = logger
	cfg.Version = version()
	cfg.Listen = c.String("listen")
	cfg.Node.DataDir = c.String("data-dir")
	cfg.Node.APIAddr = c.String("advertise-addr")
	cfg.Node.RaftListen = c.String("raft-addr")
	cfg.Node.RaftAddr = c.String("advertise-raft-addr")
	if cfg.Node.RaftAddr == "" {
		cfg.Node.RaftAddr = cfg.Node.RaftListen
	}
	cfg.Node.ReplicaID = membership.ReplicaID(c.Uint64("node-id"))
	cfg.JoinSecret = c.String("join-secret")
	securityFrom(c, &cfg)
	cfg.ReloadOnSIGHUP = true
	cfg.LeaveOnExit = c.Bool("leave-on-exit")
	cfg.Pprof = c.Bool("enable-pprof")
	cfg.Node.Rejoin = c.Bool("rejoin")
	cfg.Node.BootstrapExpect = c.Int("bootstrap-expect")
	cfg.Node.RTT = c.Duration("rtt")
	cfg.Node.SnapshotEntries = c.Uint64("snapshot-entries")
	cfg.Node.CompactionOverhead = c.Uint64("compaction-overhead")
	cfg.Node.WatchHistory = c.Int("watch-history")
	cfg.Node.WatchHistoryBytes = c.Int64("watch-history-bytes")
	cfg.Node.SnapshotHistoryBytes = c.Int64("snapshot-history-bytes")
	if cfg.Node.WatchHistory == 0 {
		return cfg, fmt.Errorf("--watch-history 0: give a number of revisions, or -1 for none")
	}
	cfg.Limits.MaxKeySize = c.Int("max-key-size")
	cfg.Limits.MaxValueSize = c.Int("max-value-size")
	cfg.Limits.MaxRangeLimit = c.Int("max-range-limit")
	cfg.Limits.MaxRangeBytes = c.Int("max-range-bytes")
	if err := cfg.Limits.Validate(); err != nil {
		return cfg, err
	}
	if err := membersFrom(c, &cfg); err != nil {
		return cfg, err
	}
	if err := advertiseDefaults(&cfg); err != nil {
		return cfg, err
	}
	if dir := c.String("issue-cert-from-ca"); dir != "" {
		if err := issueOwnCert(&cfg, dir); err != nil {
			return cfg, err
		}
	}
	src, err := discoverySource(c, &cfg)
	if err != nil {
		return cfg, err
	}
	cfg.Node.Seeds, err = seedSource(c.String("join"), src, cfg)
	return cfg, err
}

// securityFrom reads the TLS and membership-guard flags.
func securityFrom(c *cli.Context, cfg *server.Config) {
	cfg.Node.TLS.CertFile = c.String("cert-file")
	cfg.Node.TLS.KeyFile = c.String("key-file")
	cfg.Node.TLS.CAFile = c.String("trusted-ca-file")
	cfg.ClientCertAuth = c.Bool("client-cert-auth")
	cfg.InsecureOpenMembership = c.Bool("insecure-open-membership")
}

// membersFrom reads --initial-members and the autopilot's policy.
func membersFrom(c *cli.Context, cfg *server.Config) error {
	cfg.Node.Policy.Voters = c.Int("voters")
	cfg.Node.Policy.PromoteAfter = c.Duration("promote-after")
	cfg.Node.Policy.DeadAfter = c.Duration("dead-after")
	if s := c.String("initial-members"); s != "" {
		m, err := membership.ParseMembers(s)
		if err != nil {
			return fmt.Errorf("--initial-members: %w", err)
		}
		cfg.Node.InitialMembers = m
		// The autopilot retires voters above --voters: a static cluster
		// of more initial voters than the default target keeps them.
		if !c.IsSet("voters") && len(m) > cfg.Node.Policy.Voters {
			cfg.Node.Policy.Voters = len(m) | 1
		}
	}
	return cfg.Node.Policy.Validate()
}

// advertiseDefaults: a node listening on all interfaces (0.0.0.0, ::, or
// no host) advertises its hostname, a stable name in containers, where IPs
// change across restarts.
func advertiseDefaults(cfg *server.Config) error {
	wildcard := func(addr string) (string, bool) {
		host, port, err := net.SplitHostPort(addr)
		return port, err == nil && (host == "" || host == "0.0.0.0" || host == "::")
	}
	hostname := func() (string, error) {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("cannot read the hostname to advertise (%v): set --advertise-addr and --advertise-raft-addr", err)
		}
		return h, nil
	}
	if cfg.Node.APIAddr == "" {
		if port, ok := wildcard(cfg.Listen); ok {
			h, err := hostname()
			if err != nil {
				return err
			}
			cfg.Node.APIAddr = net.JoinHostPort(h, port)
		} else if !strings.HasSuffix(cfg.Listen, ":0") {
			cfg.Node.APIAddr = cfg.Listen
		}
	}
	if cfg.Node.RaftAddr == cfg.Node.RaftListen {
		if port, ok := wildcard(cfg.Node.RaftListen); ok {
			h, err := hostname()
			if err != nil {
				return err
			}
			cfg.Node.RaftAddr = net.JoinHostPort(h, port)
		}
	}
	return nil
}

// discoverySource reads --discover: DNS, or Consul, which also becomes
// the server's registry. nil without --discover.
func discoverySource(c *cli.Context, cfg *server.Config) (discovery.Source, error) {
	spec := c.String("discover")
	if spec == "" {
		return nil, nil
	}
	service, isConsul, err := registry.ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	if !isConsul {
		src, err := discovery.Parse(spec, nil)
		if err != nil {
			return nil, fmt.Errorf("--discover: %w (or consul:SERVICE)", err)
		}
		return src, nil
	}
	after := c.Duration("consul-deregister-after")
	if after < time.Minute {
		return nil, fmt.Errorf("--consul-deregister-after %v: Consul's minimum is 1m", after)
	}
	reg, err := registry.New(registry.Config{
		Service: service, Addr: c.String("consul-addr"), DeregisterAfter: after,
		CheckTLS: cfg.Node.TLS.CertFile != "", Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	cfg.Registry = reg
	return reg, nil
}

// seedSource combines --join (static) and --discover (DNS or Consul) into
// the seed function the node calls on every join or formation round; this
// node's own addresses are left out.
func seedSource(join string, src discovery.Source, cfg server.Config) (func() []string, error) {
	var static []string
	for _, a := range strings.Split(join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			static = append(static, a)
		}
	}
	if len(static) == 0 && src == nil {
		return nil, nil
	}
	_, port, _ := net.SplitHostPort(cfg.Listen)
	advHost, _, _ := net.SplitHostPort(cfg.Node.APIAddr)
	warn := quietLog(cfg.Logger, 10*time.Second)
	return func() []string {
		peers := append([]string(nil), static...)
		if src != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			found, err := src.Peers(ctx)
			cancel()
			if err != nil {
				warn("cannot list peers; waiting and retrying", "discover", src.String(), "err", err)
			}
			peers = append(peers, found...)
		}
		return discovery.Without(peers, port, advHost, cfg.Node.APIAddr)
	}, nil
}

// quietLog returns a warning logger that repeats a message only when its
// error changed or every period: seeds are listed on every join and
// formation round, several times a second.
func quietLog(log *slog.Logger, period time.Duration) func(msg string, args ...any) {
	var mu sync.Mutex
	var last string
	var at time.Time
	return func(msg string, args ...any) {
		key := fmt.Sprint(append([]any{msg}, args...)...)
		mu.Lock()
		defer mu.Unlock()
		if key == last && time.Since(at) < period {
			return
		}
		last, at = key, time.Now()
		log.Warn(msg, args...)
	}
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: plainErrors}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// plainErrors renders an error value by its Error(). slog's text handler
// prints values it has no other way for with %+v, and for Dragonboat's and
// Pebble's errors (github.com/cockroachdb/errors) that is the whole stack
// of where the error was made, inside one WARN line.
func plainErrors(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindAny {
		if err, ok := a.Value.Any().(error); ok {
			a.Value = slog.StringValue(err.Error())
		}
	}
	return a
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}

// run serves until ctx ends (SIGINT/SIGTERM) or the server fails, then
// shuts down cleanly.
func run(ctx context.Context, cfg server.Config) error {
	s, err := server.New(cfg)
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		cfg.Logger.Info("shutting down", "reason", "signal")
	case err := <-s.Done():
		stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		s.Stop(stopCtx)
		return err
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return s.Stop(stopCtx)
}
