package statemachine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Watch history. Every put and delete of the user keyspace that Update
// applies is also written, in the same batch, as an event:
//
//	'h' + be64(revision) + be32(seq)  →  type(1) created(1) uvarint(keylen) key value
//
// revision is the entry's index (the key's new mod revision); seq orders
// the events of one entry. The events of a revision are the same on every
// replica that holds it, and snapshots carry the newest of them (up to
// Config.SnapshotHistoryBytes); which revisions a replica holds is its own. Update keeps at least the last
// Config.HistoryRevisions revisions (unless the byte cap below cuts them,
// or the history began later): once the oldest retained one is
// further back than that plus a slack, it drops the older ones with one
// range deletion (Pebble reclaims the space in background compactions)
// and raises the floor, "s/histfloor", the oldest revision still served.
// When the history's files grow past Config.HistoryBytes (large values),
// it keeps the newest revisions that fit in 7/8 of it. The floor is
// decided where an Update batch ends, from Pebble's local size estimate,
// so replicas' floors differ; what holds on each is that every revision
// from its floor to its applied index is complete, and a read below the
// floor is ErrCompacted, never a gap. A store without a floor (new, from
// before the history, or run with the history off: dropHistory) gets
// applied+1 at its next Update: nothing older is there.

const nsHist byte = 'h'

var sysHistFloorKey = []byte("s/histfloor")

// DefaultHistoryRevisions is the history kept when Config says none.
const DefaultHistoryRevisions = 100_000

// DefaultHistoryBytes is the history's size cap when Config says none.
const DefaultHistoryBytes = 512 << 20

// DefaultSnapshotHistoryBytes is how much of the history a snapshot
// carries when Config says nothing: the newest 16 MiB of events. The
// history holds every recent value a second time, so carrying all of it
// doubled what a joiner loads (a store of 104 MB of 1 KiB values streamed
// 210 MB); a receiver's floor starts where the carried part starts.
const DefaultSnapshotHistoryBytes = 16 << 20

// EventType says what an event did.
type EventType uint8

const (
	EventPut    EventType = 1
	EventDelete EventType = 2
)

// Event is one change of a user key.
type Event struct {
	Type     EventType
	Key      []byte
	Value    []byte // nil for deletes
	Revision uint64 // the key's mod revision (for a delete: the deleting entry)
	Created  bool   // a put that created the key
}

// HistoryQuery reads the events of revisions From and later (From 0:
// none, only Next = the applied index + 1, "from now")
// for keys matching Key/End: End nil = the key Key only; otherwise the
// range [Key, End), with End = {0} meaning every key ≥ Key. Limit bounds
// the events returned, MaxBytes their keys and values, MaxScan the events
// examined (0: no bound). The bounds are checked between revisions, so a
// page never splits one and a read examines at least one whole revision:
// Next is always past From, and a page may pass a bound by one entry's
// events (Dragonboat caps an entry at 64 MiB). Lookup returns a
// HistoryResult, or an error wrapping ErrCompacted when From is below the
// floor.
type HistoryQuery struct {
	From     uint64
	Key      []byte
	End      []byte
	Limit    int
	MaxBytes int
	MaxScan  int
}

// HistoryResult answers a HistoryQuery. Next is the revision to read from
// next; Applied the applied index the read saw (every event up to it was
// examined unless More); Floor the oldest revision still held.
type HistoryResult struct {
	Events  []Event
	Next    uint64
	Applied uint64
	Floor   uint64
	More    bool
}

// ErrCompacted: the history no longer holds the revisions asked for.
var ErrCompacted = errors.New("statemachine: revision compacted")

// CompactedError says from which revision on the history is complete.
type CompactedError struct{ Floor uint64 }

func (e *CompactedError) Error() string {
	return fmt.Sprintf("statemachine: revision compacted: the oldest revision still available is %d", e.Floor)
}

func (e *CompactedError) Unwrap() error { return ErrCompacted }

func histKey(dst []byte, rev uint64, seq uint32) []byte {
	dst = append(dst[:0], nsHist)
	dst = binary.BigEndian.AppendUint64(dst, rev)
	return binary.BigEndian.AppendUint32(dst, seq)
}

func encodeEvent(dst []byte, t EventType, created bool, key, value []byte) []byte {
	c := byte(0)
	if created {
		c = 1
	}
	dst = append(dst[:0], byte(t), c)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	return append(dst, value...)
}

func decodeEvent(k, v []byte) (Event, error) {
	if len(k) != 13 || len(v) < 3 {
		return Event{}, fmt.Errorf("%w: history record %x", ErrCorruptStore, k)
	}
	n, w := binary.Uvarint(v[2:])
	if w <= 0 || uint64(len(v)-2-w) < n || (v[0] != byte(EventPut) && v[0] != byte(EventDelete)) {
		return Event{}, fmt.Errorf("%w: history record %x", ErrCorruptStore, k)
	}
	e := Event{Type: EventType(v[0]), Created: v[1] == 1, Revision: binary.BigEndian.Uint64(k[1:9])}
	e.Key = bytes.Clone(v[2+w : 2+w+int(n)])
	if e.Type == EventPut {
		e.Value = bytes.Clone(v[2+w+int(n):])
		if e.Value == nil {
			e.Value = []byte{}
		}
	}
	return e, nil
}

// record appends an event of the entry being applied to the batch.
func (a *applier) record(index uint64, t EventType, created bool, key, value []byte) error {
	a.hkey = histKey(a.hkey, index, a.seq)
	a.hval = encodeEvent(a.hval, t, created, key, value)
	a.seq++
	a.sinceCheck++
	return a.b.Set(a.hkey, a.hval, nil)
}

// compactHistory runs before the batch commits: it sets the floor of a
// store that has none, drops revisions older than the last keep, and,
// when the history's files pass maxBytes, the oldest revisions beyond
// 7/8 of it (checked every historyCheckEvents events: the size is an
// estimate from Pebble's file metadata, cheap but not free).
func (a *applier) compactHistory(applied, last, keep uint64, maxBytes int64) error {
	floor := a.floor
	if floor == 0 {
		f, ok, err := getFloor(a.db)
		if err != nil {
			return err
		}
		if !ok {
			a.floor = applied + 1
			return a.b.Set(sysHistFloorKey, be64(applied+1), nil)
		}
		floor, a.floor = f, f
	}
	newFloor := floor
	if slack := max(keep/16, 64); last+1 >= floor+keep+slack {
		newFloor = last + 1 - keep
	}
	if maxBytes > 0 && a.sinceCheck >= historyCheckEvents {
		a.sinceCheck = 0
		// From the floor on: dropped revisions wait for Pebble's
		// compactions, and must not count again.
		used, err := a.db.EstimateDiskUsage(histKey(nil, newFloor, 0), []byte{nsHist + 1})
		if err == nil && used > uint64(maxBytes) {
			// Keep the newest revisions that fit in 7/8 of the cap,
			// assuming events of even size.
			span := last + 1 - newFloor
			fit := uint64(float64(span) * float64(maxBytes) / float64(used) * 7 / 8)
			newFloor = last + 1 - fit
		}
	}
	if newFloor == floor {
		return nil
	}
	if err := a.b.DeleteRange(histKey(nil, floor, 0), histKey(nil, newFloor, 0), nil); err != nil {
		return err
	}
	a.floor = newFloor // if the commit fails, the state machine fails for good
	return a.b.Set(sysHistFloorKey, be64(newFloor), nil)
}

// dropHistory runs instead of compactHistory while the history is off. A
// store holding one (recorded while it was on, or received in a snapshot)
// loses its events and its floor in the first Update's batch, and so
// reads like a store that never had a history: nothing is held up to its
// applied index, whatever it applies next. Were they kept, a node turned
// on again would serve a watch from the old floor without the revisions
// applied while it was off, and so would a snapshot it sent.
func (a *applier) dropHistory() error {
	if a.dropped {
		return nil
	}
	_, ok, err := getFloor(a.db)
	if err != nil {
		return err
	}
	if ok {
		if err := a.b.DeleteRange([]byte{nsHist}, []byte{nsHist + 1}, nil); err != nil {
			return err
		}
		if err := a.b.Delete(sysHistFloorKey, nil); err != nil {
			return err
		}
	}
	a.dropped = true // if the commit fails, the state machine fails for good
	return nil
}

// historyCheckEvents is how many events pass between checks of the
// history's size.
const historyCheckEvents = 1024

// getFloor reads the history's floor; ok is false when the store has none.
func getFloor(r getter) (floor uint64, ok bool, err error) {
	v, closer, err := r.Get(sysHistFloorKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("statemachine: read %q: %w", sysHistFloorKey, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, false, fmt.Errorf("%w: %q has %d bytes, want 8", ErrCorruptStore, sysHistFloorKey, len(v))
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// history reads a HistoryQuery from one consistent snapshot.
func (s *StateMachine) history(q *HistoryQuery) (HistoryResult, error) {
	if q.Limit < 0 || q.MaxBytes < 0 || q.MaxScan < 0 {
		return HistoryResult{}, fmt.Errorf("%w: history from %d, limit %d, max bytes %d, max scan %d", ErrInvalidQuery, q.From, q.Limit, q.MaxBytes, q.MaxScan)
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	applied, err := getUint64(snap, sysAppliedKey)
	if err != nil {
		return HistoryResult{}, err
	}
	floor, ok, err := getFloor(snap)
	if err != nil {
		return HistoryResult{}, err
	}
	if !ok {
		floor = applied + 1
	}
	res := HistoryResult{Applied: applied, Floor: floor, Next: max(q.From, applied+1)}
	if q.From == 0 {
		return res, nil
	}
	if q.From < floor {
		return res, &CompactedError{Floor: floor}
	}
	if q.From > applied {
		res.Next = q.From
		return res, nil
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: histKey(nil, q.From, 0), UpperBound: []byte{nsHist + 1}})
	if err != nil {
		return HistoryResult{}, fmt.Errorf("statemachine: history: %w", err)
	}
	if err := q.scan(it, &res); err != nil {
		_ = it.Close()
		return HistoryResult{}, err
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return HistoryResult{}, fmt.Errorf("statemachine: history: %w", err)
	}
	return res, nil
}

// scan reads the events at it into res, whole revisions at a time: the
// bounds are checked only where a revision ends, so a read finishes every
// revision it starts (a page never splits one) and examines at least one
// (a read always advances, however many events of one entry do not match).
func (q *HistoryQuery) scan(it *pebble.Iterator, res *HistoryResult) error {
	scanned, size, last := 0, 0, uint64(0) // last: the revision being scanned
	for valid := it.First(); valid; valid = it.Next() {
		rev := binary.BigEndian.Uint64(it.Key()[1:9])
		if rev != last && q.full(len(res.Events), size, scanned) {
			res.Next, res.More = rev, true
			return nil
		}
		last = rev
		scanned++
		v, err := it.ValueAndErr()
		if err != nil {
			return nil // it.Error reports it
		}
		e, err := decodeEvent(it.Key(), v)
		if err != nil {
			return err
		}
		if q.matches(e.Key) {
			res.Events = append(res.Events, e)
			size += len(e.Key) + len(e.Value)
		}
	}
	return nil
}

// full reports whether a page of events holding size bytes, examined out
// of scanned, has reached the query's bounds.
func (q *HistoryQuery) full(events, size, scanned int) bool {
	return q.Limit > 0 && events >= q.Limit || q.MaxBytes > 0 && size >= q.MaxBytes ||
		q.MaxScan > 0 && scanned >= q.MaxScan
}

func (q *HistoryQuery) matches(key []byte) bool {
	if q.End == nil {
		return bytes.Equal(key, q.Key)
	}
	if bytes.Compare(key, q.Key) < 0 {
		return false
	}
	return len(q.End) == 1 && q.End[0] == 0 || bytes.Compare(key, q.End) < 0
}
