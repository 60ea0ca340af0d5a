package statemachine

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

// Values of sm.Result.Value that Update sets on each entry. They are part of
// the replicated behaviour: every replica computes the same one for an entry.
const (
	// ResultCorrupt: the entry was not a valid command batch. Nothing was
	// written, the entry still counts as applied, and Data holds the
	// decoding error as text (ParseResult turns it back into an error).
	ResultCorrupt uint64 = 0
	// ResultApplied: Data holds EncodeResults of one Result per command (an
	// empty entry, a Raft no-op, yields zero results).
	ResultApplied uint64 = 1
	// ResultReplayed: the entry was at or below the applied index and was
	// skipped; Data is empty. Dragonboat does not hand such entries to Update
	// in normal operation.
	ResultReplayed uint64 = 2
)

// ParseResult decodes the sm.Result that Update set on an entry into one
// Result per command. An entry that was not a valid command batch gives an
// error wrapping ErrCorruptCommand.
func ParseResult(r sm.Result) ([]Result, error) {
	switch r.Value {
	case ResultApplied:
		return DecodeResults(r.Data)
	case ResultCorrupt:
		return nil, fmt.Errorf("%w: %s", ErrCorruptCommand, r.Data)
	case ResultReplayed:
		return nil, errors.New("statemachine: entry was already applied; no result")
	default:
		return nil, fmt.Errorf("%w: unknown result value %d", ErrCorruptCommand, r.Value)
	}
}

// Update applies committed entries. All commands of all entries go into one
// Pebble batch together with the new applied index, committed without an
// fsync (see DESIGN.md, "Durability"). Entries at or below the applied index
// are skipped. Entry indexes that do not increase panic: Dragonboat broke its
// contract and continuing would corrupt state.
func (s *StateMachine) Update(ents []sm.Entry) (_ []sm.Entry, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return nil, err
	}
	defer s.catchFatal(&err)

	applied := s.applied.Load()
	last := applied
	a := &s.apply
	a.begin(s.db, s.gen)
	a.history = s.cfg.HistoryRevisions > 0
	defer a.end()
	for i := range ents {
		e := &ents[i]
		if i > 0 && e.Index <= ents[i-1].Index {
			panic(fmt.Sprintf("statemachine: entry index %d follows %d in one Update batch", e.Index, ents[i-1].Index))
		}
		if e.Index <= applied {
			e.Result = sm.Result{Value: ResultReplayed}
			continue
		}
		r, err := a.applyEntry(e.Index, e.Cmd)
		if err != nil {
			return nil, s.fail(err)
		}
		if r.Value == ResultCorrupt {
			s.log.Warn("corrupt entry applied as a no-op", "index", e.Index, "err", string(r.Data))
		}
		e.Result = r
		last = e.Index
	}
	if last == applied {
		return ents, nil
	}
	if a.history {
		err = a.compactHistory(applied, last, uint64(s.cfg.HistoryRevisions), s.cfg.HistoryBytes)
	} else {
		err = a.dropHistory()
	}
	if err != nil {
		return nil, s.fail(err)
	}
	if err := a.commit(last); err != nil {
		return nil, s.fail(err)
	}
	a.cacheBatch()
	s.applied.Store(last)
	if s.cfg.OnApply != nil {
		s.cfg.OnApply(last)
	}
	return ents, nil
}

// applier turns decoded commands into one Pebble batch. Reads go through
// overlay first, so a command sees the writes of earlier commands and
// entries of the same batch, then through cache, then to Pebble.
type applier struct {
	db      *pebble.DB
	b       *pebble.Batch
	it      *pebble.Iterator   // reads of the DB, opened lazily once per Update
	overlay map[string]keyMeta // keys written in this batch; exists=false: deleted
	cache   headerCache        // headers of the committed store (headercache.go)
	key     []byte             // scratch internal key
	results []Result           // scratch, reused per entry
	mods    []uint64           // scratch, compare revisions
	history bool               // record watch events (history.go)
	seq     uint32             // next event of the entry being applied
	hkey    []byte             // scratch event key
	hval    []byte             // scratch event value
	// sinceCheck counts events since the history's size was last checked.
	sinceCheck int
	// floor caches the history's floor of the store of generation
	// floorGen (0: not read yet), so that Update does not read it each time.
	floor, floorGen uint64
	// dropped: with the history off, the store of generation floorGen
	// holds none (dropHistory).
	dropped bool
}

func (a *applier) begin(db *pebble.DB, gen uint64) {
	a.db = db
	if a.floorGen != gen {
		a.floorGen, a.floor, a.dropped = gen, 0, false // another store: read its floor again
	}
	a.b = db.NewBatch()
	if a.overlay == nil {
		a.overlay = make(map[string]keyMeta)
	}
	if a.cache.m == nil {
		a.cache = newHeaderCache(headerCacheBytes)
	}
	a.cache.reset(gen)
}

// cacheBatch adds the headers the batch wrote to the cache, once the
// batch has committed: a batch that failed leaves the cache as it was.
func (a *applier) cacheBatch() {
	for k, m := range a.overlay {
		a.cache.add(k, m)
	}
}

// end releases the batch unless commit handed it to Pebble; a batch whose
// commit failed is left to the garbage collector, as Pebble asks.
func (a *applier) end() {
	if a.b != nil {
		_ = a.b.Close()
	}
	if a.it != nil {
		_ = a.it.Close()
		a.it = nil
	}
	a.b, a.db = nil, nil
	clear(a.overlay)
}

func (a *applier) commit(applied uint64) error {
	if err := a.b.Set(sysAppliedKey, be64(applied), nil); err != nil {
		return err
	}
	b := a.b
	a.b = nil
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("commit batch: %w", err)
	}
	return b.Close()
}

// applyEntry applies one entry and returns its result. The error is a
// storage failure, never a property of the entry.
func (a *applier) applyEntry(index uint64, cmd []byte) (sm.Result, error) {
	if len(cmd) == 0 {
		return sm.Result{Value: ResultApplied, Data: EncodeResults(nil, nil)}, nil
	}
	cmds, err := DecodeCommands(cmd)
	if err != nil {
		detail := strings.TrimPrefix(err.Error(), ErrCorruptCommand.Error()+": ")
		return sm.Result{Value: ResultCorrupt, Data: []byte(detail)}, nil
	}
	a.results = a.results[:0]
	a.seq = 0
	for i := range cmds {
		r, err := a.applyCommand(index, &cmds[i])
		if err != nil {
			return sm.Result{}, err
		}
		a.results = append(a.results, r)
	}
	return sm.Result{Value: ResultApplied, Data: EncodeResults(nil, a.results)}, nil
}

func (a *applier) applyCommand(index uint64, c *Command) (Result, error) {
	ok, err := a.compare(c.Compares)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		return Result{Revision: index, Current: append([]uint64(nil), a.mods...)}, nil
	}
	r := Result{Revision: index, Succeeded: true}
	for i := range c.Ops {
		deleted, err := a.applyOp(index, &c.Ops[i])
		if err != nil {
			return Result{}, err
		}
		if deleted {
			r.Deleted++
		}
	}
	return r, nil
}

// compare checks a command's compares, leaving each key's current mod
// revision in a.mods.
func (a *applier) compare(cmps []Compare) (bool, error) {
	a.mods = a.mods[:0]
	ok := true
	for i := range cmps {
		m, err := a.get(nsUser, cmps[i].Key)
		if err != nil {
			return false, err
		}
		a.mods = append(a.mods, m.mod)
		ok = ok && m.mod == cmps[i].ModRevision
	}
	return ok, nil
}

// applyOp applies one op of the entry at index (and records its watch
// event); deleted reports a delete that removed a key.
func (a *applier) applyOp(index uint64, op *Op) (deleted bool, err error) {
	ns := nsUser
	if op.Type == OpMetaPut || op.Type == OpMetaDelete {
		ns = nsMeta
	}
	m, err := a.get(ns, op.Key) // leaves the internal key in a.key
	if err != nil {
		return false, err
	}
	switch op.Type {
	case OpPut, OpMetaPut:
		created := !m.exists
		if m.exists {
			m.mod = index
			m.version++
		} else {
			m = keyMeta{exists: true, create: index, mod: index, version: 1}
		}
		a.put(m, op.Value)
		if a.history && op.Type == OpPut {
			return false, a.record(index, EventPut, created, op.Key, op.Value)
		}
		return false, nil
	case OpDelete, OpMetaDelete:
		if !m.exists {
			return false, nil
		}
		if err := a.b.Delete(a.key, nil); err != nil {
			return false, err
		}
		a.overlay[string(a.key)] = keyMeta{}
		if a.history && op.Type == OpDelete {
			return true, a.record(index, EventDelete, false, op.Key, nil)
		}
		return true, nil
	default:
		// DecodeCommands admits only known op types.
		panic(fmt.Sprintf("statemachine: op type %v passed decoding", op.Type))
	}
}

// get returns the revision header of key in namespace ns as of the batch so
// far, and leaves the internal key in a.key. Keys the batch has not touched
// are looked up in the header cache, and then read through one Pebble
// iterator per Update, which adds them to the cache: the store cannot change
// during an Update (only Update writes it, and its batch commits at the
// end), and a reused iterator keeps sstable index and filter blocks at hand
// across lookups.
func (a *applier) get(ns byte, key []byte) (keyMeta, error) {
	a.key = append(append(a.key[:0], ns), key...)
	if m, ok := a.overlay[string(a.key)]; ok {
		return m, nil
	}
	if m, ok := a.cache.get(a.key); ok {
		return m, nil
	}
	m, err := a.read()
	if err != nil {
		return keyMeta{}, err
	}
	a.cache.add(string(a.key), m)
	return m, nil
}

// read returns the header of a.key in the committed store.
func (a *applier) read() (keyMeta, error) {
	if a.it == nil {
		it, err := a.db.NewIter(nil)
		if err != nil {
			return keyMeta{}, err
		}
		a.it = it
	}
	if !a.it.SeekPrefixGE(a.key) || !bytes.Equal(a.it.Key(), a.key) {
		if err := a.it.Error(); err != nil {
			return keyMeta{}, fmt.Errorf("read %q: %w", a.key, err)
		}
		return keyMeta{}, nil
	}
	v, err := a.it.ValueAndErr()
	if err != nil {
		return keyMeta{}, fmt.Errorf("read %q: %w", a.key, err)
	}
	m, _, err := decodeStored(v)
	if err != nil {
		return keyMeta{}, fmt.Errorf("key %q: %w", a.key, err)
	}
	return m, nil
}

// put writes a.key = header(m) + value into the batch without intermediate
// copies, and records m in the overlay.
func (a *applier) put(m keyMeta, value []byte) {
	h := m.headerLen()
	op := a.b.SetDeferred(len(a.key), h+len(value))
	copy(op.Key, a.key)
	m.putHeader(op.Value)
	copy(op.Value[h:], value)
	_ = op.Finish() // only fails for indexed batches
	a.overlay[string(a.key)] = m
}
