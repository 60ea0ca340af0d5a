package statemachine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

// Snapshot stream format, version 1 (integers big-endian unless "uvarint"):
//
//	header  = magic(8 bytes "KVDSNAP\x00") version(1 byte = 1) applied(8)
//	record  = 0x01 keylen(uvarint) key vallen(uvarint) value
//	end     = 0x00 count(8)          ; number of records
//	trailer = crc32c(4)              ; over every byte from magic to count
//
// Records carry the whole internal Pebble keyspace (user, metadata and
// system keys, including the applied index) in strictly ascending key order,
// which makes the stream canonical: one state, one byte string.
var snapshotMagic = [8]byte{'K', 'V', 'D', 'S', 'N', 'A', 'P', 0}

const (
	snapshotVersion = 1
	tagEnd          = 0x00
	tagRecord       = 0x01

	// maxSnapshotField bounds one key or stored value. Dragonboat caps an
	// entry at 64 MiB, so no legitimate key or value comes near it.
	maxSnapshotField = 128 << 20
	// stopCheckEvery is how many records pass between looks at stopc.
	stopCheckEvery = 1024
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapshotTableSize is the size of keys and values at which recovery closes
// one sstable and starts the next (a variable: tests make it small).
var snapshotTableSize = 64 << 20

// preparedSnapshot is the state identifier PrepareSnapshot hands to
// SaveSnapshot: a Pebble snapshot and the applied index it contains.
type preparedSnapshot struct {
	snap    *pebble.Snapshot
	applied uint64
}

// PrepareSnapshot captures the current state (a Pebble snapshot) for a
// later SaveSnapshot.
func (s *StateMachine) PrepareSnapshot() (interface{}, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return nil, err
	}
	p := &preparedSnapshot{snap: s.db.NewSnapshot(), applied: s.applied.Load()}
	s.snapsMu.Lock()
	if s.snaps == nil {
		s.snaps = make(map[*preparedSnapshot]struct{})
	}
	s.snaps[p] = struct{}{}
	s.snapsMu.Unlock()
	return p, nil
}

// release closes a prepared snapshot once.
func (s *StateMachine) release(p *preparedSnapshot) {
	s.snapsMu.Lock()
	defer s.snapsMu.Unlock()
	if _, ok := s.snaps[p]; ok {
		delete(s.snaps, p)
		_ = p.snap.Close()
	}
}

// releaseAll closes the prepared snapshots SaveSnapshot never consumed, so
// the store they pin can close. Dragonboat never runs SaveSnapshot
// concurrently with Close or RecoverFromSnapshot, the callers.
func (s *StateMachine) releaseAll() {
	s.snapsMu.Lock()
	defer s.snapsMu.Unlock()
	for p := range s.snaps {
		_ = p.snap.Close()
	}
	clear(s.snaps)
}

// SaveSnapshot streams the prepared state to w and releases it. It runs
// concurrently with Update. It returns sm.ErrSnapshotStopped when stopc
// closes, and w's error (such as sm.ErrSnapshotStreaming) unwrapped.
func (s *StateMachine) SaveSnapshot(state interface{}, w io.Writer, stopc <-chan struct{}) error {
	p, ok := state.(*preparedSnapshot)
	if ok {
		s.snapsMu.Lock()
		_, ok = s.snaps[p]
		s.snapsMu.Unlock()
	}
	if !ok {
		return fmt.Errorf("statemachine: SaveSnapshot got %T, not an unused PrepareSnapshot result", state)
	}
	defer s.release(p)
	keys, err := writeSnapshot(p.snap, p.applied, s.cfg.SnapshotHistoryBytes, w, stopc)
	if err != nil {
		return err
	}
	s.recordSaved(SavedSnapshot{Applied: p.applied, Keys: keys})
	return nil
}

// SavedSnapshotQuery asks how many user keys the snapshot Dragonboat took
// at Raft index Index holds (node.Export reads it for the backup header).
// Lookup returns a SavedSnapshot, Found false when no snapshot saved lately
// matches.
//
// SaveSnapshot counts them as it writes, so the count costs no pass over
// the data. The state machine's applied index at a snapshot is the highest
// applied index of the saves at or below Raft index Index (entries that
// never reach Update, such as config changes, raise Raft's index only), and
// one applied index names one state: two saves at one applied index hold
// the same keys.
type SavedSnapshotQuery struct{ Index uint64 }

// SavedSnapshot answers a SavedSnapshotQuery: Keys user keys at applied
// index Applied.
type SavedSnapshot struct {
	Applied, Keys uint64
	Found         bool
}

// savedKept is how many recent saves SavedSnapshotQuery can find: Dragonboat
// saves one snapshot at a time per replica (streams to followers aside).
const savedKept = 8

// recordSaved remembers a completed save, dropping the oldest beyond
// savedKept.
func (s *StateMachine) recordSaved(v SavedSnapshot) {
	s.snapsMu.Lock()
	defer s.snapsMu.Unlock()
	v.Found = true
	if len(s.saved) == savedKept {
		s.saved = slices.Delete(s.saved, 0, 1)
	}
	s.saved = append(s.saved, v)
}

// savedSnapshot answers a SavedSnapshotQuery.
func (s *StateMachine) savedSnapshot(q SavedSnapshotQuery) SavedSnapshot {
	s.snapsMu.Lock()
	defer s.snapsMu.Unlock()
	var best SavedSnapshot
	for _, v := range s.saved {
		if v.Applied <= q.Index && (!best.Found || v.Applied >= best.Applied) {
			best = v
		}
	}
	return best
}

// writeSnapshot writes the stream and returns the number of user keys in
// it (records of the user namespace: not metadata, history or system keys).
// Of the watch history it writes the newest whole revisions whose events
// fit in histBytes (< 0: all), and a floor that says where they start.
func writeSnapshot(snap *pebble.Snapshot, applied uint64, histBytes int64, w io.Writer, stopc <-chan struct{}) (uint64, error) {
	histFrom, err := snapshotHistoryFrom(snap, applied, histBytes)
	if err != nil {
		return 0, err
	}
	sw := &snapshotWriter{w: bufio.NewWriterSize(w, 256<<10)}
	sw.write(snapshotMagic[:])
	sw.write([]byte{snapshotVersion})
	sw.write(be64(applied))
	it, err := snap.NewIter(nil)
	if err != nil {
		return 0, fmt.Errorf("statemachine: snapshot iterator: %w", err)
	}
	var count, keys uint64
	for valid := it.First(); valid && sw.err == nil; valid = it.Next() {
		if count%stopCheckEvery == 0 && stopped(stopc) {
			_ = it.Close()
			return 0, sm.ErrSnapshotStopped
		}
		key := it.Key()
		if key[0] == nsHist && bytes.Compare(key, histKey(nil, histFrom, 0)) < 0 {
			valid = it.SeekGE(histKey(nil, histFrom, 0))
			if !valid {
				break
			}
			key = it.Key()
		}
		v, err := it.ValueAndErr()
		if err != nil {
			break // it.Error reports it
		}
		switch {
		case bytes.Equal(key, sysAppliedKey) && !bytes.Equal(v, be64(applied)):
			_ = it.Close()
			return 0, fmt.Errorf("statemachine: prepared applied index %d disagrees with snapshot %x", applied, v)
		case bytes.Equal(key, sysHistFloorKey) && len(v) == 8 && binary.BigEndian.Uint64(v) < histFrom:
			v = be64(histFrom)
		case key[0] == nsUser:
			keys++
		}
		sw.record(key, v)
		count++
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, fmt.Errorf("statemachine: snapshot iterator: %w", err)
	}
	sw.write([]byte{tagEnd})
	sw.write(be64(count))
	sum := sw.crc
	sw.write(binary.BigEndian.AppendUint32(nil, sum))
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	return keys, sw.err // unwrapped: Dragonboat compares it with its sentinels
}

// snapshotHistoryFrom returns the oldest revision of history a snapshot
// carries: the newest whole revisions whose events (keys and values) fit
// in max bytes, walked from the newest; 0 when all of it fits (or max <
// 0), applied+1 when not even the newest revision does.
func snapshotHistoryFrom(snap *pebble.Snapshot, applied uint64, limit int64) (uint64, error) {
	if limit < 0 {
		return 0, nil
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{nsHist}, UpperBound: []byte{nsHist + 1}})
	if err != nil {
		return 0, fmt.Errorf("statemachine: snapshot history: %w", err)
	}
	from := applied + 1 // the oldest revision whose events are all counted
	var rev uint64      // the revision being counted
	var size int64
	for valid := it.Last(); valid; valid = it.Prev() {
		if len(it.Key()) != 13 {
			_ = it.Close()
			return 0, fmt.Errorf("%w: history record %x", ErrCorruptStore, it.Key())
		}
		if r := binary.BigEndian.Uint64(it.Key()[1:9]); r != rev {
			if rev != 0 {
				from = rev
			}
			rev = r
		}
		lv := it.LazyValue()
		size += int64(len(it.Key()) + lv.Len())
		if size > limit {
			return from, errors.Join(it.Error(), it.Close())
		}
	}
	return 0, errors.Join(it.Error(), it.Close())
}

// snapshotWriter buffers, checksums, and keeps the first write error.
type snapshotWriter struct {
	w   *bufio.Writer
	crc uint32
	err error
	tmp [binary.MaxVarintLen64]byte
}

func (sw *snapshotWriter) write(b []byte) {
	if sw.err != nil {
		return
	}
	sw.crc = crc32.Update(sw.crc, castagnoli, b)
	_, sw.err = sw.w.Write(b)
}

func (sw *snapshotWriter) record(key, value []byte) {
	sw.write([]byte{tagRecord})
	sw.write(sw.tmp[:binary.PutUvarint(sw.tmp[:], uint64(len(key)))])
	sw.write(key)
	sw.write(sw.tmp[:binary.PutUvarint(sw.tmp[:], uint64(len(value)))])
	sw.write(value)
}

// RecoverFromSnapshot replaces the whole state with the snapshot in r. It
// validates the stream while writing its records (which arrive in key order)
// into sstables, verifies the checksum, ingests the sstables into a new Pebble
// store (durable once Ingest returns) and only then switches CURRENT to it
// and closes and removes the old store. On any error before the switch the
// old state stays in place, untouched and still served; a crash at any point
// leaves either the old or the new store. It returns sm.ErrSnapshotStopped
// when stopc closes, and an error wrapping ErrCorruptSnapshot for an invalid
// stream.
func (s *StateMachine) RecoverFromSnapshot(r io.Reader, stopc <-chan struct{}) (err error) {
	s.mu.RLock()
	if err := s.usable(); err != nil {
		s.mu.RUnlock()
		return err
	}
	oldGen := s.gen
	s.mu.RUnlock()
	defer s.catchFatal(&err)

	fs := s.cfg.FS
	newGen := oldGen + 1
	newDir := fs.PathJoin(s.dir, dataDirName(newGen))
	start := time.Now()
	s.log.Info("recovering from snapshot", "generation", newGen)
	applied, st, err := s.loadSnapshot(newDir, r, stopc)
	if err != nil {
		if rmErr := fs.RemoveAll(newDir); rmErr != nil {
			s.log.Warn("removing failed recovery", "dir", newDir, "err", rmErr)
		}
		return err
	}
	// The switch. From here on, a failure may leave CURRENT naming either
	// store, so nothing is removed and the failure is sticky: the replica
	// must restart and Open finds whichever store CURRENT names.
	if err := writeCurrent(fs, s.dir, newGen); err != nil {
		return s.fail(err)
	}
	opts := pebbleOptions(s.cfg, s.cache, s.log, false)
	opts.ErrorIfNotExists = true
	db, err := openDB(newDir, opts)
	if err != nil {
		return s.fail(err)
	}
	s.mu.Lock()
	old := s.db
	s.db, s.gen = db, newGen
	s.applied.Store(applied)
	s.mu.Unlock()
	s.releaseAll()

	if err := closeDB(old); err != nil {
		s.log.Warn("closing replaced store", "err", err)
	}
	oldDir := fs.PathJoin(s.dir, dataDirName(oldGen))
	if err := fs.RemoveAll(oldDir); err != nil {
		// Harmless: Open removes it.
		s.log.Warn("removing replaced store", "dir", oldDir, "err", err)
	}
	s.log.Info("recovered from snapshot", "applied", applied, "generation", newGen,
		"records", st.records, "tables", st.tables, "bytes", st.bytes,
		"read_and_write", st.written.Round(time.Millisecond), "ingest", st.ingest.Round(time.Millisecond),
		"total", time.Since(start).Round(time.Millisecond))
	return nil
}

// loadStats says what a snapshot load did and where its time went: reading
// the stream while writing sstables, and ingesting them.
type loadStats struct {
	records, bytes  uint64
	tables          int
	written, ingest time.Duration
}

// loadSnapshot writes the snapshot in r into a fresh store in dir and makes
// it durable. It returns the snapshot's applied index.
func (s *StateMachine) loadSnapshot(dir string, r io.Reader, stopc <-chan struct{}) (applied uint64, st loadStats, err error) {
	fs := s.cfg.FS
	if err := fs.RemoveAll(dir); err != nil {
		return 0, st, fmt.Errorf("statemachine: %w", err)
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return 0, st, fmt.Errorf("statemachine: %w", err)
	}
	if err := syncDir(fs, s.dir); err != nil {
		return 0, st, err
	}
	opts := pebbleOptions(s.cfg, s.cache, s.log, true)
	opts.ErrorIfExists = true
	opts.EnsureDefaults() // the level options the tables are written with
	db, err := openDB(dir, opts)
	if err != nil {
		return 0, st, err
	}
	defer func() {
		if cerr := closeDB(db); err == nil && cerr != nil {
			err = cerr
		}
	}()
	t0 := time.Now()
	l := &tableLoader{fs: fs, dir: dir, opts: opts.MakeWriterOptions(len(opts.Levels)-1, db.TableFormat())}
	defer l.abort()
	applied, st.records, err = readSnapshot(r, l, stopc)
	if err != nil {
		return 0, st, err
	}
	if err := l.finish(); err != nil {
		return 0, st, err
	}
	st.tables, st.bytes, st.written = len(l.paths), l.total, time.Since(t0)
	// The tables do not overlap and the store is empty: Ingest links them
	// into its last level and syncs the MANIFEST that names them.
	t1 := time.Now()
	if err := db.Ingest(context.Background(), l.paths); err != nil {
		return 0, st, fmt.Errorf("statemachine: ingest recovered store: %w", err)
	}
	st.ingest = time.Since(t1)
	return applied, st, nil
}

// readSnapshot validates the stream in r while handing its records to l. It
// returns the applied index and the record count once the end marker,
// record count and checksum have been verified.
func readSnapshot(r io.Reader, l *tableLoader, stopc <-chan struct{}) (uint64, uint64, error) {
	sr := &snapshotReader{r: bufio.NewReaderSize(r, 256<<10)}
	applied, err := sr.header()
	if err != nil {
		return 0, 0, err
	}
	count, err := sr.records(l, applied, stopc)
	if err != nil {
		return 0, 0, err
	}
	if err := sr.trailer(count); err != nil {
		return 0, 0, err
	}
	return applied, count, nil
}

// tableLoader writes records, which arrive in strictly ascending key order,
// into sstables in dir (snapshot-NNNNNN.sst, names Pebble neither makes nor
// touches), starting a new one every snapshotTableSize bytes: no batch,
// memtable or flush between the stream and the files that Ingest adopts.
type tableLoader struct {
	fs    vfs.FS
	dir   string
	opts  sstable.WriterOptions
	w     *sstable.Writer
	size  int
	total uint64
	paths []string
}

func (l *tableLoader) add(key, val []byte) error {
	if l.w == nil {
		path := l.fs.PathJoin(l.dir, fmt.Sprintf("snapshot-%06d.sst", len(l.paths)))
		f, err := l.fs.Create(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			return fmt.Errorf("statemachine: load snapshot: %w", err)
		}
		l.w = sstable.NewWriter(objstorageprovider.NewFileWritable(f), l.opts)
		l.paths = append(l.paths, path)
		l.size = 0
	}
	if err := l.w.Set(key, val); err != nil {
		return fmt.Errorf("statemachine: load snapshot: %w", err)
	}
	l.size += len(key) + len(val)
	l.total += uint64(len(key) + len(val))
	if l.size >= snapshotTableSize {
		return l.finish()
	}
	return nil
}

// finish completes (and syncs) the table being written, if any.
func (l *tableLoader) finish() error {
	if l.w == nil {
		return nil
	}
	w := l.w
	l.w = nil
	if err := w.Close(); err != nil {
		return fmt.Errorf("statemachine: load snapshot: %w", err)
	}
	return nil
}

// abort closes the table being written after a failure (the caller
// removes the directory).
func (l *tableLoader) abort() {
	if l.w != nil {
		_ = l.w.Close()
		l.w = nil
	}
}

// header reads the magic and version and returns the applied index.
func (sr *snapshotReader) header() (uint64, error) {
	var hdr [len(snapshotMagic) + 1 + 8]byte
	if err := sr.full(hdr[:]); err != nil {
		return 0, err
	}
	if !bytes.Equal(hdr[:8], snapshotMagic[:]) {
		return 0, corruptSnapshotf("bad magic %q", hdr[:8])
	}
	if hdr[8] != snapshotVersion {
		return 0, corruptSnapshotf("version %d, want %d", hdr[8], snapshotVersion)
	}
	return binary.BigEndian.Uint64(hdr[9:]), nil
}

// records hands every record up to the end tag to l, checking each, and
// returns their count.
func (sr *snapshotReader) records(l *tableLoader, applied uint64, stopc <-chan struct{}) (uint64, error) {
	var key, val, prev []byte
	var count uint64
	var sawApplied, sawFormat bool
	for ; ; count++ {
		if count%stopCheckEvery == 0 && stopped(stopc) {
			return 0, sm.ErrSnapshotStopped
		}
		tag, err := sr.byte()
		if err != nil {
			return 0, err
		}
		if tag == tagEnd {
			break
		}
		if tag != tagRecord {
			return 0, corruptSnapshotf("record %d: unknown tag %#x", count, tag)
		}
		if key, err = sr.field(key[:0]); err != nil {
			return 0, err
		}
		if val, err = sr.field(val[:0]); err != nil {
			return 0, err
		}
		if count > 0 && bytes.Compare(prev, key) >= 0 {
			return 0, corruptSnapshotf("record %d: key %q not after %q", count, key, prev)
		}
		if err := checkRecord(key, val, applied); err != nil {
			return 0, corruptSnapshotf("record %d: %v", count, err)
		}
		sawApplied = sawApplied || bytes.Equal(key, sysAppliedKey)
		sawFormat = sawFormat || bytes.Equal(key, sysFormatKey)
		if err := l.add(key, val); err != nil {
			return 0, err
		}
		prev = append(prev[:0], key...)
	}
	if !sawApplied || !sawFormat {
		return 0, corruptSnapshotf("missing system keys (applied: %v, format: %v)", sawApplied, sawFormat)
	}
	return count, nil
}

// trailer checks the end marker's record count and the checksum of
// everything before it.
func (sr *snapshotReader) trailer(count uint64) error {
	var tail [8]byte
	if err := sr.full(tail[:]); err != nil {
		return err
	}
	if n := binary.BigEndian.Uint64(tail[:]); n != count {
		return corruptSnapshotf("end marker counts %d records, stream has %d", n, count)
	}
	want := sr.crc
	var sum [4]byte
	if err := sr.full(sum[:]); err != nil {
		return err
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return corruptSnapshotf("checksum %08x, computed %08x", got, want)
	}
	return nil
}

// checkRecord validates one record against the layout of store.go.
func checkRecord(key, val []byte, applied uint64) error {
	if len(key) == 0 {
		return errors.New("empty key")
	}
	switch key[0] {
	case nsUser, nsMeta:
		if len(key) < 2 {
			return errors.New("empty key")
		}
		m, _, err := decodeStored(val)
		if err != nil {
			return err
		}
		if m.mod > applied {
			return fmt.Errorf("key %q modified at %d, after applied index %d", key, m.mod, applied)
		}
	case nsHist:
		e, err := decodeEvent(key, val)
		if err != nil {
			return err
		}
		if e.Revision > applied {
			return fmt.Errorf("event %x at revision %d, after applied index %d", key, e.Revision, applied)
		}
	case nsSys:
		var want uint64
		switch {
		case bytes.Equal(key, sysAppliedKey):
			want = applied
		case bytes.Equal(key, sysFormatKey):
			want = storeFormat
		case bytes.Equal(key, sysHistFloorKey):
			if len(val) != 8 || binary.BigEndian.Uint64(val) > applied+1 {
				return fmt.Errorf("history floor %x past applied index %d", val, applied)
			}
			return nil
		default:
			return fmt.Errorf("unknown system key %q", key)
		}
		if !bytes.Equal(val, be64(want)) {
			return fmt.Errorf("system key %q = %x, want %d", key, val, want)
		}
	default:
		return fmt.Errorf("key %q in unknown namespace", key)
	}
	return nil
}

func corruptSnapshotf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorruptSnapshot, fmt.Sprintf(format, args...))
}

// snapshotReader reads the stream and checksums exactly the bytes it
// consumes.
type snapshotReader struct {
	r   *bufio.Reader
	crc uint32
	one [1]byte
}

func (sr *snapshotReader) readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corruptSnapshotf("truncated")
	}
	return fmt.Errorf("statemachine: read snapshot: %w", err)
}

func (sr *snapshotReader) full(b []byte) error {
	if _, err := io.ReadFull(sr.r, b); err != nil {
		return sr.readErr(err)
	}
	sr.crc = crc32.Update(sr.crc, castagnoli, b)
	return nil
}

func (sr *snapshotReader) byte() (byte, error) {
	c, err := sr.r.ReadByte()
	if err != nil {
		return 0, sr.readErr(err)
	}
	sr.one[0] = c
	sr.crc = crc32.Update(sr.crc, castagnoli, sr.one[:])
	return c, nil
}

// uvarint reads a canonical uvarint.
func (sr *snapshotReader) uvarint() (uint64, error) {
	var v uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := sr.byte()
		if err != nil {
			return 0, err
		}
		if i == binary.MaxVarintLen64-1 && c > 1 {
			break
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, corruptSnapshotf("non-canonical varint")
			}
			return v, nil
		}
	}
	return 0, corruptSnapshotf("varint overflows 64 bits")
}

// field reads a length-prefixed byte string into buf. It grows buf as bytes
// arrive, so a lying length costs no more memory than the stream holds.
func (sr *snapshotReader) field(buf []byte) ([]byte, error) {
	n, err := sr.uvarint()
	if err != nil {
		return nil, err
	}
	if n > maxSnapshotField {
		return nil, corruptSnapshotf("field of %d bytes exceeds %d", n, maxSnapshotField)
	}
	for rem := int(n); rem > 0; {
		chunk := min(rem, 1<<20)
		buf = slices.Grow(buf, chunk)
		if err := sr.full(buf[len(buf) : len(buf)+chunk]); err != nil {
			return nil, err
		}
		buf = buf[:len(buf)+chunk]
		rem -= chunk
	}
	return buf, nil
}
