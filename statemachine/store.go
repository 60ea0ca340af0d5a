package statemachine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// On-disk layout of a state machine directory:
//
//	<dir>/LOCK           held while the state machine is open
//	<dir>/CURRENT        "data-NNNNNN\n": the live Pebble directory
//	<dir>/CURRENT.tmp    a pointer being written (removed by Open)
//	<dir>/data-NNNNNN/   Pebble stores; only the one CURRENT names is live
//
// RecoverFromSnapshot builds generation N+1 beside the live N and switches
// by renaming CURRENT.tmp over CURRENT, so a crash leaves one or the other.
const (
	lockFile    = "LOCK"
	currentFile = "CURRENT"
	currentTmp  = "CURRENT.tmp"
	dataPrefix  = "data-"
)

// Pebble key layout: the first byte is the namespace.
const (
	nsUser byte = 'u' // 'u' + user key
	nsMeta byte = 'm' // 'm' + metadata key
	nsSys  byte = 's' // system keys below
)

var (
	// sysAppliedKey holds the applied index, 8 bytes big-endian, written in
	// the same batch as the data it covers.
	sysAppliedKey = []byte("s/applied")
	// sysFormatKey holds storeFormat, 8 bytes big-endian.
	sysFormatKey = []byte("s/format")
)

// storeFormat is the version of the key layout and value encoding.
const storeFormat = 1

// keyMeta is the revision header stored before every user and metadata
// value: create revision, mod revision, version, as uvarints.
type keyMeta struct {
	exists  bool
	create  uint64
	mod     uint64
	version uint64
}

func (m keyMeta) headerLen() int {
	return uvarintLen(m.create) + uvarintLen(m.mod) + uvarintLen(m.version)
}

// putHeader writes m's header into dst, which must be at least
// m.headerLen() long, and returns the bytes written.
func (m keyMeta) putHeader(dst []byte) int {
	n := binary.PutUvarint(dst, m.create)
	n += binary.PutUvarint(dst[n:], m.mod)
	n += binary.PutUvarint(dst[n:], m.version)
	return n
}

// decodeStored splits a stored value into its header and the user value
// (which aliases v).
func decodeStored(v []byte) (keyMeta, []byte, error) {
	d := decoder{b: v}
	m := keyMeta{exists: true, create: d.uvarint(), mod: d.uvarint(), version: d.uvarint()}
	if d.err != nil {
		return keyMeta{}, nil, fmt.Errorf("%w: stored value: %v", ErrCorruptStore, d.err)
	}
	if m.create == 0 || m.mod < m.create || m.version == 0 {
		return keyMeta{}, nil, fmt.Errorf("%w: stored value header create=%d mod=%d version=%d",
			ErrCorruptStore, m.create, m.mod, m.version)
	}
	return m, v[d.off:], nil
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func dataDirName(gen uint64) string { return fmt.Sprintf("%s%06d", dataPrefix, gen) }

func parseDataDirName(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, dataPrefix)
	if !ok || len(rest) < 6 {
		return 0, false
	}
	gen, err := strconv.ParseUint(rest, 10, 64)
	if err != nil || gen == 0 || dataDirName(gen) != name {
		return 0, false
	}
	return gen, true
}

// store is what openStore hands to the StateMachine.
type store struct {
	db      *pebble.DB
	gen     uint64
	applied uint64
	cache   *pebble.Cache
	lock    io.Closer
}

// openStore locks dir, removes leftovers, opens the generation CURRENT names
// (creating generation 1 when there is no CURRENT) and reads its applied
// index.
func openStore(dir string, cfg Config, log *slog.Logger) (_ *store, err error) {
	fs := cfg.FS
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("statemachine: %w", err)
	}
	// Make dir's own entry durable, in case MkdirAll just created it.
	if err := syncDir(fs, fs.PathDir(dir)); err != nil {
		return nil, err
	}
	lock, err := fs.Lock(fs.PathJoin(dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("statemachine: lock %s: %w", dir, err)
	}
	cache := pebble.NewCache(cfg.CacheSize)
	defer func() {
		if err != nil {
			cache.Unref()
			_ = lock.Close()
		}
	}()
	gen, found, err := readCurrent(fs, dir)
	if err != nil {
		return nil, err
	}
	if !found {
		gen = 1
	}
	if err := removeLeftovers(fs, dir, gen, found, log); err != nil {
		return nil, err
	}
	dataDir := fs.PathJoin(dir, dataDirName(gen))
	if !found {
		if err := createStore(fs, dir, dataDir, gen, pebbleOptions(cfg, cache, log, false)); err != nil {
			return nil, err
		}
	}
	opts := pebbleOptions(cfg, cache, log, false)
	opts.ErrorIfNotExists = true
	db, err := openDB(dataDir, opts)
	if err != nil {
		return nil, err
	}
	applied, err := checkStore(db)
	if err != nil {
		_ = closeDB(db)
		return nil, err
	}
	return &store{db: db, gen: gen, applied: applied, cache: cache, lock: lock}, nil
}

// createStore makes an empty, durable store in dataDir, then points CURRENT
// at it. A crash before CURRENT is written leaves no CURRENT, and the next
// Open starts over.
func createStore(fs vfs.FS, dir, dataDir string, gen uint64, opts *pebble.Options) error {
	if err := fs.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("statemachine: %w", err)
	}
	if err := syncDir(fs, dir); err != nil {
		return err
	}
	db, err := openDB(dataDir, opts)
	if err != nil {
		return err
	}
	b := db.NewBatch()
	_ = b.Set(sysFormatKey, be64(storeFormat), nil)
	_ = b.Set(sysAppliedKey, be64(0), nil)
	err = b.Commit(pebble.Sync)
	if cerr := closeDB(db); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("statemachine: initialise store: %w", err)
	}
	return writeCurrent(fs, dir, gen)
}

// checkStore verifies the store format and returns the applied index.
func checkStore(db *pebble.DB) (uint64, error) {
	format, err := getUint64(db, sysFormatKey)
	if err != nil {
		return 0, err
	}
	if format != storeFormat {
		return 0, fmt.Errorf("%w: store format %d, this binary reads %d", ErrCorruptStore, format, storeFormat)
	}
	return getUint64(db, sysAppliedKey)
}

type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

// getUint64 reads a required 8-byte system value.
func getUint64(r getter, key []byte) (uint64, error) {
	v, closer, err := r.Get(key)
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return 0, fmt.Errorf("%w: missing %q", ErrCorruptStore, key)
		}
		return 0, fmt.Errorf("statemachine: read %q: %w", key, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %q has %d bytes, want 8", ErrCorruptStore, key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// readCurrent returns the generation CURRENT names, found=false when there
// is no CURRENT.
func readCurrent(fs vfs.FS, dir string) (gen uint64, found bool, err error) {
	f, err := fs.Open(fs.PathJoin(dir, currentFile))
	if err != nil {
		if oserrorIsNotExist(err) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("statemachine: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return 0, false, fmt.Errorf("statemachine: read CURRENT: %w", err)
	}
	name, ok := strings.CutSuffix(string(b), "\n")
	gen, valid := parseDataDirName(name)
	if !ok || !valid {
		return 0, false, fmt.Errorf("%w: CURRENT holds %q", ErrCorruptStore, b)
	}
	return gen, true, nil
}

// writeCurrent atomically points CURRENT at generation gen: write a
// temporary file, fsync it, rename it over CURRENT, fsync the directory.
func writeCurrent(fs vfs.FS, dir string, gen uint64) error {
	tmp := fs.PathJoin(dir, currentTmp)
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("statemachine: write CURRENT: %w", err)
	}
	_, err = io.WriteString(f, dataDirName(gen)+"\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, fs.PathJoin(dir, currentFile))
	}
	if err != nil {
		return fmt.Errorf("statemachine: write CURRENT: %w", err)
	}
	return syncDir(fs, dir)
}

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("statemachine: sync dir: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("statemachine: sync dir: %w", err)
	}
	return nil
}

// removeLeftovers deletes every data directory but the live one (all of
// them when there is no CURRENT) and a stale CURRENT.tmp.
func removeLeftovers(fs vfs.FS, dir string, live uint64, found bool, log *slog.Logger) error {
	names, err := fs.List(dir)
	if err != nil {
		return fmt.Errorf("statemachine: %w", err)
	}
	for _, name := range names {
		gen, ok := parseDataDirName(name)
		stale := (ok && (!found || gen != live)) || name == currentTmp
		if !stale {
			continue
		}
		log.Info("removing leftover", "path", name)
		if err := fs.RemoveAll(fs.PathJoin(dir, name)); err != nil {
			return fmt.Errorf("statemachine: remove leftover %s: %w", name, err)
		}
	}
	return nil
}

// pebbleOptions returns the options of a live store, or of a store being
// bulk-loaded from a snapshot (no WAL, larger memtables: a final Flush makes
// it durable).
func pebbleOptions(cfg Config, cache *pebble.Cache, log *slog.Logger, bulk bool) *pebble.Options {
	o := &pebble.Options{
		FS:           cfg.FS,
		Cache:        cache,
		MemTableSize: cfg.MemTableSize,
		Logger:       pebbleLogger{log.With("source", "pebble")},
		// Pin the on-disk format to this Pebble version's newest, so an
		// upgrade of Pebble never silently ratchets it.
		FormatMajorVersion: pebble.FormatNewest,
	}
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	if bulk {
		o.DisableWAL = true
		o.MemTableSize = max(cfg.MemTableSize, 32<<20)
	}
	return o
}

func openDB(dir string, opts *pebble.Options) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(*pebbleFatal)
			if !ok {
				panic(r)
			}
			db, err = nil, fmt.Errorf("%w: open %s: %w", ErrFailed, dir, f)
		}
	}()
	db, err = pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("statemachine: open %s: %w", dir, err)
	}
	return db, nil
}

// closeDB closes db, turning a Pebble fatal error into an error.
func closeDB(db *pebble.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(*pebbleFatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%w: close: %w", ErrFailed, f)
		}
	}()
	return db.Close()
}

// pebbleLogger adapts slog to pebble.Logger. Fatalf panics with a
// *pebbleFatal instead of exiting the process: where Pebble calls it from the
// goroutine of an Update or Sync (a failed WAL write), the state machine
// recovers the panic and returns ErrFailed, which halts the replica; from a
// Pebble background goroutine the panic crashes the process, as Pebble's
// default logger would.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	f := &pebbleFatal{msg: fmt.Sprintf(format, args...)}
	p.l.Error("pebble fatal error", "err", f.msg)
	panic(f)
}

type pebbleFatal struct{ msg string }

func (f *pebbleFatal) Error() string { return f.msg }

func oserrorIsNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist)
}
