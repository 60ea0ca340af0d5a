package node

import (
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ShardID is the one Raft group kvd runs today.
const ShardID uint64 = 1

// ReplicaID names a replica in the Raft group; never 0, never reused.
type ReplicaID uint64

// Config is everything a node needs to start. DefaultConfig fills it in.
type Config struct {
	// DataDir holds the identity file, Dragonboat's LogDB and the state machine.
	DataDir string
	// ReplicaID of this node. 0 = take it from the identity file, or from
	// InitialMembers by RaftAddr, or 1 for a single-node cluster.
	ReplicaID ReplicaID
	// RaftAddr is the address other replicas dial (host:port).
	RaftAddr string
	// RaftListen is the address the Raft transport binds; empty = RaftAddr.
	RaftListen string
	// APIAddr is the advertised API address, published as member metadata.
	APIAddr string
	// InitialMembers (ReplicaID → Raft address) bootstraps a static cluster.
	// Empty = a single-voter cluster of this node.
	InitialMembers map[ReplicaID]string

	// RTT is Dragonboat's logical tick; ElectionTicks and HeartbeatTicks count it.
	RTT            time.Duration
	ElectionTicks  uint64
	HeartbeatTicks uint64
	// SnapshotEntries: take a (metadata-only) snapshot every this many
	// entries; CompactionOverhead entries are kept behind it so that lagging
	// replicas catch up from the log rather than a full stream.
	SnapshotEntries    uint64
	CompactionOverhead uint64
	// ReadyTimeout bounds each catch-up ReadIndex attempt.
	ReadyTimeout time.Duration

	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// DefaultConfig is the embedded default: one voter on loopback in ./kvd-data.
func DefaultConfig() Config {
	return Config{
		DataDir:            "kvd-data",
		RaftAddr:           "127.0.0.1:7170",
		APIAddr:            "127.0.0.1:7070",
		RTT:                50 * time.Millisecond,
		ElectionTicks:      20,
		HeartbeatTicks:     2,
		SnapshotEntries:    10000,
		CompactionOverhead: 5000,
		ReadyTimeout:       3 * time.Second,
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
	if len(c.InitialMembers) > 0 {
		id, err := c.memberID()
		if err != nil {
			return err
		}
		if c.InitialMembers[id] != c.RaftAddr {
			return fmt.Errorf("%w: initial member %d has raft address %q but this node's raft address is %q",
				ErrBadConfig, id, c.InitialMembers[id], c.RaftAddr)
		}
	}
	return nil
}

// memberID finds this node's ID in InitialMembers: the given ReplicaID, or
// the member whose address is RaftAddr.
func (c *Config) memberID() (ReplicaID, error) {
	if c.ReplicaID != 0 {
		if _, ok := c.InitialMembers[c.ReplicaID]; !ok {
			return 0, fmt.Errorf("%w: node ID %d is not in the initial members (%s)", ErrBadConfig, c.ReplicaID, FormatMembers(c.InitialMembers))
		}
		return c.ReplicaID, nil
	}
	for id, addr := range c.InitialMembers {
		if addr == c.RaftAddr {
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w: raft address %s is not in the initial members (%s); set --node-id or --raft-addr",
		ErrBadConfig, c.RaftAddr, FormatMembers(c.InitialMembers))
}

// ParseMembers parses "1=host:port,2=host:port".
func ParseMembers(s string) (map[ReplicaID]string, error) {
	out := map[ReplicaID]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		idStr, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("%w: initial member %q: want ID=host:port", ErrBadConfig, part)
		}
		id, err := strconv.ParseUint(idStr, 10, 64)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("%w: initial member %q: ID must be a positive integer", ErrBadConfig, part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: initial member %q: %v", ErrBadConfig, part, err)
		}
		if _, dup := out[ReplicaID(id)]; dup {
			return nil, fmt.Errorf("%w: initial member ID %d appears twice", ErrBadConfig, id)
		}
		out[ReplicaID(id)] = addr
	}
	return out, nil
}

// FormatMembers is the inverse of ParseMembers, sorted by ID.
func FormatMembers(m map[ReplicaID]string) string {
	ids := make([]ReplicaID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%d=%s", id, m[id])
	}
	return strings.Join(parts, ",")
}
