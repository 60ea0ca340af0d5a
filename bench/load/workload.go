package load

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Target performs the operations of a workload against one system. Run
// calls it from many goroutines at once. key and value are reused by the
// caller after the call returns: a Target must not keep them.
type Target interface {
	// Put writes value under key.
	Put(ctx context.Context, key, value []byte) error
	// Get reads key; found is false (and err nil) when it does not exist.
	Get(ctx context.Context, key []byte) (found bool, err error)
}

// KeyDist is how workers pick keys.
type KeyDist string

const (
	// Uniform picks every key with equal probability, independently.
	Uniform KeyDist = "uniform"
	// Sequential walks the keyspace in order, shared by all workers, and
	// wraps around.
	Sequential KeyDist = "sequential"
)

// Workload describes one closed-loop run. The flag names in Validate's
// messages are those of the bench command.
type Workload struct {
	// Clients is the number of workers, each with one call in flight.
	Clients int
	// Duration is how long to measure; 0 when Ops is set.
	Duration time.Duration
	// Ops is how many measured operations to issue; 0 when Duration is set.
	Ops int64
	// Warmup runs the load unmeasured before measuring.
	Warmup time.Duration
	// KeySize and ValueSize are in bytes; Keyspace is the number of
	// distinct keys.
	KeySize   int
	ValueSize int
	Keyspace  int
	KeyDist   KeyDist
	// ReadRatio is the fraction of operations that are Gets (0..1).
	ReadRatio float64
	// Preload writes every key of the keyspace once before the warmup.
	Preload bool
	// Seed makes keys, values and the read/write mix repeatable.
	Seed uint64
}

// DefaultWorkload is the shape of the targets: 16-byte keys,
// 128-byte values (a 144-byte payload), a 100k keyspace, writes only.
func DefaultWorkload() Workload {
	return Workload{
		Clients:   16,
		Duration:  10 * time.Second,
		Warmup:    time.Second,
		KeySize:   16,
		ValueSize: 128,
		Keyspace:  100_000,
		KeyDist:   Uniform,
		Seed:      1,
	}
}

// maxClients bounds Clients: every worker is a goroutine with its own
// buffers, and more than this is a typo, not a benchmark.
const maxClients = 100_000

// Validate reports the first invalid setting, naming the flag and value.
func (w Workload) Validate() error {
	switch {
	case w.Clients < 1 || w.Clients > maxClients:
		return fmt.Errorf("--clients (%d) must be between 1 and %d", w.Clients, maxClients)
	case w.Duration < 0:
		return fmt.Errorf("--duration (%v) must be > 0", w.Duration)
	case w.Ops < 0:
		return fmt.Errorf("--ops (%d) must be > 0", w.Ops)
	case w.Duration > 0 && w.Ops > 0:
		return fmt.Errorf("--duration (%v) and --ops (%d) are both set: give one", w.Duration, w.Ops)
	case w.Duration == 0 && w.Ops == 0:
		return fmt.Errorf("neither --duration nor --ops is set: give one")
	case w.Warmup < 0:
		return fmt.Errorf("--warmup (%v) must be >= 0", w.Warmup)
	case w.Keyspace < 1:
		return fmt.Errorf("--keyspace (%d) must be >= 1", w.Keyspace)
	case w.KeySize < KeySizeFor(w.Keyspace):
		return fmt.Errorf("--key-size (%d) is too small for --keyspace (%d): keys need at least %d bytes (\"k\" and %d digits)",
			w.KeySize, w.Keyspace, KeySizeFor(w.Keyspace), KeySizeFor(w.Keyspace)-1)
	case w.KeySize > 1<<20:
		return fmt.Errorf("--key-size (%d) must be <= %d", w.KeySize, 1<<20)
	case w.ValueSize < 0 || w.ValueSize > 64<<20:
		return fmt.Errorf("--value-size (%d) must be between 0 and %d", w.ValueSize, 64<<20)
	case math.IsNaN(w.ReadRatio) || w.ReadRatio < 0 || w.ReadRatio > 1:
		return fmt.Errorf("--read-ratio (%v) must be between 0 and 1", w.ReadRatio)
	}
	switch w.KeyDist {
	case Uniform, Sequential:
	default:
		return fmt.Errorf("--key-dist %q is not %q or %q", w.KeyDist, Uniform, Sequential)
	}
	return nil
}
