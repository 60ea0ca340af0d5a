package node

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvd-project/kvd/membership"
)

// ShardID is the one Raft group kvd runs today.
const ShardID uint64 = 1

// Config is everything a node needs to start. DefaultConfig fills it in.
type Config struct {
	// DataDir holds the identity file, Dragonboat's LogDB and the state machine.
	DataDir string
	// ReplicaID of this node. 0 = from the identity file, or from
	// InitialMembers by RaftAddr, or random when joining, or 1 alone.
	ReplicaID membership.ReplicaID
	// RaftAddr is the address other replicas dial (host:port).
	RaftAddr string
	// RaftListen is the address the Raft transport binds; empty = RaftAddr.
	RaftListen string
	// APIAddr is the advertised API address, published as member metadata.
	APIAddr string
	// InitialMembers (ReplicaID → Raft address) bootstraps a static cluster.
	InitialMembers map[membership.ReplicaID]string
	// Seeds returns API addresses of members to join through (--join or
	// discovery); nil = don't join. Called again on every retry round.
	Seeds func() []string
	// Rejoin: a removed replica wipes its state and joins under a new ID.
	Rejoin bool
	// BootstrapExpect: with Seeds (discovery) and no state anywhere, wait
	// until this many nodes see each other, then all bootstrap the same
	// initial set (the lowest IDs) and the rest join. 0 = off.
	BootstrapExpect int
	// WatchHistory is how many revisions of change events the state
	// machine keeps for watchers; 0 = statemachine.DefaultHistoryRevisions,
	// < 0 = none (Watch is refused).
	WatchHistory int
	// WatchHistoryBytes caps the history's size (estimated; checked every
	// 1024 events); 0 = statemachine.DefaultHistoryBytes, < 0 = no cap.
	WatchHistoryBytes int64
	// SnapshotHistoryBytes caps the history a snapshot carries (to a
	// joiner, a follower behind, a backup); 0 =
	// statemachine.DefaultSnapshotHistoryBytes, < 0 = all of it.
	SnapshotHistoryBytes int64
	// Formation is published to peers (kvd.v1.Bootstrap); nil = not published.
	Formation *membership.Formation
	// Policy drives self-promotion and dead-voter replacement.
	Policy membership.Policy
	// Peers calls other members' APIs (join, status, views).
	Peers membership.PeerDialer
	// TLS: with its files set, the Raft transport uses Dragonboat's mutual
	// TLS (both ends present a certificate signed by the CA).
	TLS TLSFiles

	// RTT is Dragonboat's logical tick; ElectionTicks and HeartbeatTicks count it.
	RTT            time.Duration
	ElectionTicks  uint64
	HeartbeatTicks uint64
	// SnapshotEntries: take a (metadata-only) snapshot every this many
	// entries; CompactionOverhead entries are kept behind it so that lagging
	// replicas catch up from the log rather than a full stream.
	SnapshotEntries    uint64
	CompactionOverhead uint64
	// ReadyTimeout bounds each catch-up ReadIndex attempt. Short: a
	// ReadIndex sent before the replica knows its leader is dropped without
	// an answer, so the attempt only ends at its timeout; and a node that
	// cannot apply up to the read index within it is not caught up yet.
	ReadyTimeout time.Duration

	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// TLSFiles are the PEM files of a node's certificate, its key and the
// cluster CA (etcd's --cert-file, --key-file, --trusted-ca-file). All empty
// = plaintext. Dragonboat reads them when the Raft transport starts (its
// listener keeps that certificate until a restart) and again for every
// connection it dials.
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
}

// Enabled: the node has a certificate.
func (t TLSFiles) Enabled() bool { return t.CertFile != "" }

// Validate says which flag is missing: a certificate needs its key, and
// the CA, against which nodes verify each other.
func (t TLSFiles) Validate() error {
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		return fmt.Errorf("%w: --cert-file and --key-file go together: give both (the node's certificate and its private key), or neither to run without TLS", ErrBadConfig)
	case t.CertFile != "" && t.CAFile == "":
		return fmt.Errorf("%w: --cert-file needs --trusted-ca-file: nodes verify each other against the cluster CA (Raft's mutual TLS and the calls between members)", ErrBadConfig)
	case t.CertFile == "" && t.CAFile != "":
		return fmt.Errorf("%w: --trusted-ca-file needs --cert-file and --key-file: the node's own certificate, signed by that CA", ErrBadConfig)
	}
	return nil
}

// DefaultConfig is the embedded default: one voter on loopback in ./kvd-data.
func DefaultConfig() Config {
	return Config{
		DataDir:            "kvd-data",
		RaftAddr:           "127.0.0.1:7170",
		APIAddr:            "127.0.0.1:7070",
		Policy:             membership.DefaultPolicy(),
		RTT:                50 * time.Millisecond,
		ElectionTicks:      20,
		HeartbeatTicks:     2,
		SnapshotEntries:    10000,
		CompactionOverhead: 5000,
		ReadyTimeout:       250 * time.Millisecond,
	}
}

// Validate reports the first invalid setting, naming the values that clash.
func (c *Config) Validate() error {
	switch {
	case c.DataDir == "":
		return fmt.Errorf("%w: data dir is empty", ErrBadConfig)
	case c.RaftAddr == "":
		return fmt.Errorf("%w: raft address is empty", ErrBadConfig)
	case c.RTT < time.Millisecond:
		return fmt.Errorf("%w: RTT (%s) must be at least 1ms", ErrBadConfig, c.RTT)
	case c.HeartbeatTicks == 0:
		return fmt.Errorf("%w: HeartbeatTicks must be > 0", ErrBadConfig)
	case c.ElectionTicks <= 2*c.HeartbeatTicks:
		return fmt.Errorf("%w: ElectionTicks (%d) must be > 2×HeartbeatTicks (%d)", ErrBadConfig, c.ElectionTicks, c.HeartbeatTicks)
	case c.SnapshotEntries != 0 && c.CompactionOverhead >= c.SnapshotEntries*4:
		return fmt.Errorf("%w: CompactionOverhead (%d) should be below 4×SnapshotEntries (%d)", ErrBadConfig, c.CompactionOverhead, c.SnapshotEntries)
	case c.Seeds != nil && c.Peers == nil:
		return fmt.Errorf("%w: joining needs a PeerDialer", ErrBadConfig)
	case c.BootstrapExpect < 0:
		return fmt.Errorf("%w: --bootstrap-expect (%d) must not be negative", ErrBadConfig, c.BootstrapExpect)
	case c.BootstrapExpect > 0 && c.Seeds == nil:
		return fmt.Errorf("%w: --bootstrap-expect needs --discover or --join to find the other nodes", ErrBadConfig)
	case c.BootstrapExpect > 0 && len(c.InitialMembers) > 0:
		return fmt.Errorf("%w: --bootstrap-expect and --initial-members exclude each other", ErrBadConfig)
	}
	if err := c.Policy.Validate(); err != nil {
		return err
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
		return fmt.Errorf("%w: raft address %q: %v", ErrBadConfig, c.RaftAddr, err)
	}
	for id, addr := range c.InitialMembers {
		if id == 0 {
			return fmt.Errorf("%w: initial member ID 0 is not allowed (IDs start at 1)", ErrBadConfig)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%w: initial member %d address %q: %v", ErrBadConfig, id, addr, err)
		}
	}
	return nil
}

// NotReadyAfter is how long a ready node may go without a leader, or
// without completing a ReadIndex, before it stops being ready: the longest
// randomized election timeout (2 × RTT × ElectionTicks) plus one election
// timeout of margin, so a normal leader change does not flap readiness;
// at least 1 s, so that a busy machine's scheduling hiccups don't either.
// Defaults: RTT 50 ms × 20 ticks → 3 s.
func (c *Config) NotReadyAfter() time.Duration {
	return max(3*c.RTT*time.Duration(c.ElectionTicks), time.Second)
}

// prepare fills in the defaults, validates, installs Dragonboat's logger
// and creates the data dir: the first step of Start.
func prepare(cfg Config) (Config, error) {
	cfg = withDefaults(cfg)
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	installDragonboatLogger(cfg.Logger)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return cfg, fmt.Errorf("node: create data dir: %w", err)
	}
	return cfg, nil
}

// withDefaults fills every zero setting from DefaultConfig.
func withDefaults(cfg Config) Config {
	d := DefaultConfig()
	if cfg.RTT == 0 {
		cfg.RTT = d.RTT
	}
	if cfg.ElectionTicks == 0 {
		cfg.ElectionTicks = d.ElectionTicks
	}
	if cfg.HeartbeatTicks == 0 {
		cfg.HeartbeatTicks = d.HeartbeatTicks
	}
	if cfg.SnapshotEntries == 0 {
		cfg.SnapshotEntries = d.SnapshotEntries
		if cfg.CompactionOverhead == 0 {
			cfg.CompactionOverhead = d.CompactionOverhead
		}
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = d.ReadyTimeout
	}
	if cfg.Policy == (membership.Policy{}) {
		cfg.Policy = d.Policy
		// The autopilot retires voters above the target: keep every
		// initial voter of a larger static cluster (odd: 4 → 5).
		cfg.Policy.Voters = max(cfg.Policy.Voters, len(cfg.InitialMembers)|1)
	}
	if cfg.RaftListen == "" {
		cfg.RaftListen = cfg.RaftAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}
