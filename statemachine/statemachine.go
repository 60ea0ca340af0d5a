package statemachine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

// Config configures a StateMachine. The zero value is usable: every zero
// field takes its default (see DefaultConfig).
type Config struct {
	// FS is the filesystem the store lives on; nil means vfs.Default. Tests
	// pass an errorfs or a MemFS.
	FS vfs.FS
	// CacheSize is the size in bytes of the Pebble block cache; 0 means 8 MiB.
	CacheSize int64
	// MemTableSize is the size in bytes of a Pebble memtable; 0 means 4 MiB.
	MemTableSize uint64
	// Logger receives the state machine's and Pebble's messages; nil
	// discards them.
	Logger *slog.Logger
	// HistoryRevisions is how many revisions of watch events the store
	// keeps (history.go); 0 means DefaultHistoryRevisions, < 0 none (and
	// the first Update drops what the store held).
	HistoryRevisions int
	// HistoryBytes caps the history's files (estimated); 0 means
	// DefaultHistoryBytes, < 0 no cap.
	HistoryBytes int64
	// SnapshotHistoryBytes caps the watch history a snapshot carries (to
	// a joiner, a follower that fell behind, a backup): the newest whole
	// revisions whose events fit, by keys and values; 0 means
	// DefaultSnapshotHistoryBytes, < 0 no cap (all of it).
	SnapshotHistoryBytes int64
	// OnApply, when set, is called after each Update that applied
	// entries, with the new applied index (watchers wait for it). It must
	// not block.
	OnApply func(applied uint64)
}

// Defaults of Config.
const (
	DefaultCacheSize    = 8 << 20
	DefaultMemTableSize = 4 << 20
)

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	var c Config
	c.ensureDefaults()
	return c
}

// Validate reports a Config that Open would reject. Zero values are valid:
// they mean "the default".
func (c Config) Validate() error {
	if c.CacheSize < 0 {
		return fmt.Errorf("statemachine: CacheSize (%d) must be >= 0", c.CacheSize)
	}
	if c.MemTableSize != 0 && (c.MemTableSize < 64<<10 || c.MemTableSize >= 4<<30) {
		return fmt.Errorf("statemachine: MemTableSize (%d) must be 0 or in [64 KiB, 4 GiB)", c.MemTableSize)
	}
	return nil
}

// ensureDefaults fills every zero field; it is the only place defaults live.
func (c *Config) ensureDefaults() {
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.MemTableSize == 0 {
		c.MemTableSize = DefaultMemTableSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HistoryRevisions == 0 {
		c.HistoryRevisions = DefaultHistoryRevisions
	}
	if c.HistoryBytes == 0 {
		c.HistoryBytes = DefaultHistoryBytes
	}
	if c.SnapshotHistoryBytes == 0 {
		c.SnapshotHistoryBytes = DefaultSnapshotHistoryBytes
	}
}

// New returns the factory Dragonboat's StartOnDiskReplica needs. The state
// machine owns dir exclusively (one replica per dir; a lock file enforces
// it). An invalid cfg surfaces as the error of the first Open(stopc) call.
func New(dir string, cfg Config) sm.CreateOnDiskStateMachineFunc {
	return func(shardID, replicaID uint64) sm.IOnDiskStateMachine {
		c := cfg
		if c.Logger == nil {
			c.Logger = slog.New(slog.DiscardHandler)
		}
		c.Logger = c.Logger.With("shard", shardID, "replica", replicaID)
		s, err := Open(dir, c)
		if err != nil {
			return &StateMachine{openErr: err}
		}
		return s
	}
}

// StateMachine is kvd's Dragonboat IOnDiskStateMachine: a Pebble store
// holding the user keyspace, the metadata keyspace and the applied index.
//
// Concurrency follows Dragonboat's contract: Update, Sync, PrepareSnapshot,
// RecoverFromSnapshot and Close are mutually exclusive; SaveSnapshot may run
// concurrently with Update; Lookup may run concurrently with anything,
// including after Close.
type StateMachine struct {
	dir     string
	cfg     Config
	log     *slog.Logger
	openErr error // from New: Open(stopc) returns it

	// mu guards the store handle: Lookup, Update, Sync and PrepareSnapshot
	// hold it shared; RecoverFromSnapshot (when it swaps stores) and Close
	// hold it exclusively.
	mu     sync.RWMutex
	db     *pebble.DB
	gen    uint64 // generation of the open data directory
	state  lifecycle
	cache  *pebble.Cache
	dirLck io.Closer

	applied atomic.Uint64         // applied index of the open store
	failed  atomic.Pointer[error] // sticky storage failure, see ErrFailed

	snapsMu sync.Mutex
	snaps   map[*preparedSnapshot]struct{} // prepared, not yet saved
	saved   []SavedSnapshot                // the last savedKept saves, oldest first

	apply applier // scratch state of Update; used by Update only
}

type lifecycle uint8

const (
	stateNew lifecycle = iota
	stateOpen
	stateClosed
)

var _ sm.IOnDiskStateMachine = (*StateMachine)(nil)

// Open returns a StateMachine for dir without touching the disk; its
// Open(stopc) method opens (or creates) the store. New uses it, and so do
// tests that drive a StateMachine by hand.
func Open(dir string, cfg Config) (*StateMachine, error) {
	if dir == "" {
		return nil, errors.New("statemachine: empty dir")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.ensureDefaults()
	return &StateMachine{
		dir: dir,
		cfg: cfg,
		log: cfg.Logger.With("component", "statemachine"),
	}, nil
}

// Open opens the store, creating it when dir holds none, and returns the
// applied index that is on disk (0 for a new store). It removes what a
// crashed RecoverFromSnapshot left behind.
func (s *StateMachine) Open(stopc <-chan struct{}) (uint64, error) {
	if s.openErr != nil {
		return 0, s.openErr
	}
	if stopped(stopc) {
		return 0, sm.ErrOpenStopped
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateOpen:
		return 0, errors.New("statemachine: Open called twice")
	case stateClosed:
		return 0, ErrClosed
	}
	st, err := openStore(s.dir, s.cfg, s.log)
	if err != nil {
		return 0, err
	}
	s.db, s.gen, s.cache, s.dirLck = st.db, st.gen, st.cache, st.lock
	s.applied.Store(st.applied)
	s.state = stateOpen
	s.log.Info("opened", "dir", s.dir, "generation", st.gen, "applied", st.applied)
	return st.applied, nil
}

// Sync makes everything applied so far durable: it fsyncs Pebble's WAL,
// which holds every batch Update committed without a sync.
func (s *StateMachine) Sync() (err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return err
	}
	defer s.catchFatal(&err)
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return s.fail(fmt.Errorf("sync: %w", err))
	}
	return nil
}

// Close closes the store. It is idempotent; Lookup returns ErrClosed
// afterwards. Data safety never depends on Close being called.
func (s *StateMachine) Close() (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateClosed {
		return nil
	}
	wasOpen := s.state == stateOpen
	s.state = stateClosed
	if !wasOpen {
		return nil
	}
	db := s.db
	s.db = nil
	s.releaseAll()
	err = closeDB(db)
	s.cache.Unref()
	if cerr := s.dirLck.Close(); err == nil {
		err = cerr
	}
	s.log.Info("closed", "applied", s.applied.Load(), "err", err)
	return err
}

// Sentinel errors. They are returned wrapped: test with errors.Is.
var (
	// ErrCorruptCommand: a Raft entry (or a result) is not a valid encoding.
	// Update does not fail on such an entry: see ResultCorrupt.
	ErrCorruptCommand = errors.New("statemachine: corrupt command")
	// ErrCorruptSnapshot: a snapshot stream failed validation; the state
	// machine kept its previous state.
	ErrCorruptSnapshot = errors.New("statemachine: corrupt snapshot")
	// ErrCorruptStore: data on disk failed validation (bad pointer file,
	// unknown store format, undecodable stored value).
	ErrCorruptStore = errors.New("statemachine: corrupt store")
	// ErrClosed: the state machine is closed or was never opened.
	ErrClosed = errors.New("statemachine: closed")
	// ErrFailed: a write to the store failed. The failure is sticky: every
	// later Update, Sync or snapshot call returns it, and the state machine
	// must be reopened (the node restarted) to recover from what is on disk.
	ErrFailed = errors.New("statemachine: storage failed")
	// ErrInvalidQuery: Lookup got a query it does not understand.
	ErrInvalidQuery = errors.New("statemachine: invalid query")
)

// usable returns the error that forbids using the store, if any. Callers
// hold s.mu.
func (s *StateMachine) usable() error {
	if s.state != stateOpen {
		return ErrClosed
	}
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records a sticky storage failure and returns it.
func (s *StateMachine) fail(err error) error {
	err = fmt.Errorf("%w: %w", ErrFailed, err)
	s.failed.CompareAndSwap(nil, &err)
	s.log.Error("storage failed", "err", err)
	return *s.failed.Load()
}

// catchFatal turns a Pebble fatal error (raised as a panic by pebbleLogger in
// the calling goroutine) into a sticky ErrFailed. Other panics propagate.
func (s *StateMachine) catchFatal(errp *error) {
	if r := recover(); r != nil {
		f, ok := r.(*pebbleFatal)
		if !ok {
			panic(r)
		}
		*errp = s.fail(f)
	}
}

func stopped(stopc <-chan struct{}) bool {
	select {
	case <-stopc:
		return true
	default:
		return false
	}
}
