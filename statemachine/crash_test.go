package statemachine

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

// crashWorkload is a fixed sequence of Update batches and the state after
// each of them, computed by a fault-free reference run.
type crashWorkload struct {
	batches  [][]sm.Entry
	ends     []uint64          // last index of each batch
	expected map[uint64]string // dump after the batch ending at index (0: empty store)
}

// newCrashWorkload generates batches of puts, deletes, metadata ops and
// compare-and-swap transactions (some succeed, some fail) and records the
// reference state after each batch.
func newCrashWorkload(t *testing.T, seed uint64, nBatches int) *crashWorkload {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	ref, _ := openSM(t, vfs.NewMem(), "/ref")
	w := &crashWorkload{expected: map[uint64]string{0: dump(t, ref)}}
	key := func() string { return fmt.Sprintf("k%02d", rng.IntN(40)) }
	index := uint64(0)
	for range nBatches {
		var batch []sm.Entry
		for range 1 + rng.IntN(8) {
			index++
			var cmds []Command
			for range rng.IntN(4) { // 0 commands: an empty (no-op) entry
				cmds = append(cmds, randomCommand(t, rng, ref, key))
			}
			e := sm.Entry{Index: index}
			if len(cmds) > 0 {
				e.Cmd = EncodeCommands(nil, cmds)
			}
			batch = append(batch, e)
		}
		// Apply to the reference now, so later transactions can build
		// compares against real revisions.
		mustUpdate(t, ref, cloneEntries(batch)...)
		w.batches = append(w.batches, batch)
		w.ends = append(w.ends, index)
		w.expected[index] = dump(t, ref)
	}
	return w
}

func randomCommand(t *testing.T, rng *rand.Rand, ref *StateMachine, key func() string) Command {
	value := func() []byte {
		return bytes.Repeat([]byte{byte('a' + rng.IntN(26))}, rng.IntN(300))
	}
	switch p := rng.IntN(100); {
	case p < 55:
		return Command{Ops: []Op{{Type: OpPut, Key: []byte(key()), Value: value()}}}
	case p < 70:
		return Command{Ops: []Op{{Type: OpDelete, Key: []byte(key())}}}
	case p < 80:
		k := []byte(fmt.Sprintf("m%d", rng.IntN(5)))
		if rng.IntN(3) == 0 {
			return Command{Ops: []Op{{Type: OpMetaDelete, Key: k}}}
		}
		return Command{Ops: []Op{{Type: OpMetaPut, Key: k, Value: value()}}}
	default:
		k := key()
		var rev uint64
		if g := mustLookup[GetResult](t, ref, GetQuery{Key: []byte(k)}); g.KV != nil {
			rev = g.KV.ModRevision
		}
		if rng.IntN(3) == 0 {
			rev++ // make it fail (unless an earlier command of the batch changes k)
		}
		return Command{
			Compares: []Compare{{Key: []byte(k), ModRevision: rev}},
			Ops:      []Op{{Type: OpPut, Key: []byte(k), Value: value()}, {Type: OpDelete, Key: []byte(key())}},
		}
	}
}

func cloneEntries(ents []sm.Entry) []sm.Entry {
	out := make([]sm.Entry, len(ents))
	for i, e := range ents {
		out[i] = sm.Entry{Index: e.Index, Cmd: e.Cmd}
	}
	return out
}

// checkRecovered opens the store on fs and checks that it holds exactly the
// state after some batch of w, at an index in [lo, hi]. It returns that
// index.
func (w *crashWorkload) checkRecovered(t *testing.T, fs vfs.FS, dir string, lo, hi uint64) uint64 {
	t.Helper()
	s, applied := openSM(t, fs, dir)
	defer s.Close()
	want, ok := w.expected[applied]
	if !ok {
		t.Fatalf("recovered applied index %d is not the end of a batch (ends %v): half a batch survived", applied, w.ends)
	}
	if got := dump(t, s); got != want {
		t.Fatalf("state at applied index %d differs from the reference:\n got %s\nwant %s", applied, got, want)
	}
	if applied < lo || applied > hi {
		t.Fatalf("recovered applied index %d outside [%d (last sync), %d (last attempted)]", applied, lo, hi)
	}
	return applied
}

// failAfter fails every write or sync operation from the k-th one after it
// is armed: the disk dies at operation k.
type failAfter struct {
	k     int64
	armed atomic.Bool
	n     atomic.Int64
}

func (f *failAfter) String() string { return fmt.Sprintf("failAfter(%d)", f.k) }

func (f *failAfter) MaybeError(op errorfs.Op) error {
	if !f.armed.Load() || op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
		return nil
	}
	if f.n.Add(1) >= f.k {
		return errorfs.ErrInjected
	}
	return nil
}

func (f *failAfter) fired() bool { return f.n.Load() >= f.k }

// TestCrashDuringUpdates injects a failure at the k-th filesystem write or
// sync during a run of Update batches (with a Sync every fourth batch), for
// every k until a run completes without reaching k. Each run then "crashes"
// (a crash clone of the filesystem keeping 0, 50 or 100% of the unsynced
// data) and reopens: the store must hold exactly the state after some batch,
// at or after the last successful Sync and at or before the last batch
// attempted. The run ends with a Sync, so every injected failure must be
// reported.
func TestCrashDuringUpdates(t *testing.T) {
	w := newCrashWorkload(t, 1, 64)
	fired := 0
	for k := int64(1); ; k++ {
		mem := vfs.NewCrashableMem()
		inj := &failAfter{k: k}
		s, applied := openSM(t, errorfs.Wrap(mem, inj), "/sm")
		if applied != 0 {
			t.Fatalf("new store applied %d", applied)
		}
		inj.armed.Store(true)
		var lastSynced, lastAttempted uint64
		var failure error
		for i, batch := range w.batches {
			lastAttempted = w.ends[i]
			if _, failure = s.Update(cloneEntries(batch)); failure != nil {
				break
			}
			if i%4 == 3 {
				if failure = s.Sync(); failure != nil {
					break
				}
				lastSynced = w.ends[i]
			}
		}
		rng := rand.New(rand.NewPCG(uint64(k), 3))
		crash := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: []int{0, 50, 100}[k%3], RNG: rng})
		injected := inj.fired()
		closeFailed(t, s)
		got := w.checkRecovered(t, crash, "/sm", lastSynced, lastAttempted)
		if !injected {
			if failure != nil {
				t.Fatalf("k=%d: nothing injected, yet %v", k, failure)
			}
			if got != lastAttempted {
				t.Fatalf("fault-free run ending in Sync recovered %d, want %d", got, lastAttempted)
			}
			t.Logf("%d runs, %d with an injected failure", k, fired)
			break
		}
		fired++
		if failure == nil {
			// The run ends with a Sync, which must report any lost write.
			t.Fatalf("k=%d: a write failed but no Update or Sync reported it", k)
		}
		if !strings.Contains(failure.Error(), "injected") {
			t.Fatalf("k=%d: failure %v does not carry the injected error", k, failure)
		}
	}
	if fired < 20 {
		t.Fatalf("only %d runs hit an injected failure; the injector is not wired in", fired)
	}
}

// closeFailed closes a state machine whose disk may have failed. Pebble's
// Close can hang on a WAL that can no longer be written; a crashed process
// never closes anyway, so give up after a while and leak it.
func closeFailed(t *testing.T, s *StateMachine) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Close()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Log("Close of a failed store hangs; leaking it")
	}
}

// TestCrashAtBatchBoundaries crashes after every Update batch without any
// injected error and checks the prefix property and that synced batches
// survive.
func TestCrashAtBatchBoundaries(t *testing.T) {
	w := newCrashWorkload(t, 2, 24)
	mem := vfs.NewCrashableMem()
	s, _ := openSM(t, mem, "/sm")
	rng := rand.New(rand.NewPCG(2, 2))
	var lastSynced uint64
	for i, batch := range w.batches {
		mustUpdate(t, s, cloneEntries(batch)...)
		if rng.IntN(3) == 0 {
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			lastSynced = w.ends[i]
		}
		crash := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
		w.checkRecovered(t, crash, "/sm", lastSynced, w.ends[i])
	}
	// Data up to the last Sync survives a crash that keeps nothing else.
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	last := w.ends[len(w.ends)-1]
	if got := w.checkRecovered(t, mem.CrashClone(vfs.CrashCloneCfg{}), "/sm", last, last); got != last {
		t.Fatalf("synced store recovered at %d, want %d", got, last)
	}
}

// cloneAtEveryWrite takes a crash clone of mem before every write or sync
// operation once armed: each clone is what the disk could hold had the
// machine crashed right then. Clones alternate between keeping no unsynced
// data and keeping all of it. (Keeping a random subset of unsynced
// directory entries is stricter than Linux filesystems, which persist the
// operations on one directory in order, and Pebble's own MANIFEST marker
// protocol does not survive it; the state machine's protocol does not rely
// on ordering, but it cannot be tested apart from Pebble's here.)
type cloneAtEveryWrite struct {
	mem    *vfs.MemFS
	rng    *rand.Rand
	armed  atomic.Bool
	mu     sync.Mutex
	clones []*vfs.MemFS
}

func (c *cloneAtEveryWrite) String() string { return "cloneAtEveryWrite" }

func (c *cloneAtEveryWrite) MaybeError(op errorfs.Op) error {
	if !c.armed.Load() || op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pct := []int{0, 100}[len(c.clones)%2]
	c.clones = append(c.clones, c.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: c.rng}))
	return nil
}

// recoverFixture is a source state machine with a snapshot of state "new"
// and a target store holding a synced state "old".
type recoverFixture struct {
	snap             []byte
	oldDump, newDump string
}

func newRecoverFixture(t *testing.T) *recoverFixture {
	src, _ := openSM(t, vfs.NewMem(), "/src")
	var ents []sm.Entry
	for i := range 400 {
		ents = append(ents, entry(uint64(i+1), putCmd(fmt.Sprintf("new%04d", i), strings.Repeat("n", i))))
	}
	ents = append(ents, entry(401, Command{Ops: []Op{{Type: OpMetaPut, Key: []byte("member"), Value: []byte("new")}}}))
	mustUpdate(t, src, ents...)
	return &recoverFixture{snap: saveSnapshot(t, src), newDump: dump(t, src)}
}

// populateOld writes the "old" state into s and syncs it.
func (f *recoverFixture) populateOld(t *testing.T, s *StateMachine) {
	mustUpdate(t, s, entry(1, putCmd("old-a", "1"), putCmd("old-b", "2")),
		entry(2, Command{Ops: []Op{{Type: OpMetaPut, Key: []byte("member"), Value: []byte("old")}}}))
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	f.oldDump = dump(t, s)
}

// checkOldOrNew reopens fs and requires exactly the old or the new state.
func (f *recoverFixture) checkOldOrNew(t *testing.T, fs vfs.FS, what string) string {
	t.Helper()
	s, _ := openSM(t, fs, "/sm")
	defer s.Close()
	// Open removed every leftover of an interrupted recovery.
	names, err := fs.List("/sm")
	if err != nil {
		t.Fatal(err)
	}
	var data []string
	for _, n := range names {
		if strings.HasPrefix(n, dataPrefix) || n == currentTmp {
			data = append(data, n)
		}
	}
	if len(data) != 1 {
		t.Fatalf("%s: after Open, /sm holds %v; want one data directory", what, data)
	}
	switch got := dump(t, s); got {
	case f.oldDump:
		return "old"
	case f.newDump:
		return "new"
	default:
		t.Fatalf("%s: store is neither old nor new:\n%s", what, got)
		return ""
	}
}

// TestCrashDuringRecover crashes (in effect) before every filesystem write
// of a RecoverFromSnapshot: every crash image must reopen to exactly the old
// or exactly the new state, and images taken after the switch must be new.
func TestCrashDuringRecover(t *testing.T) {
	f := newRecoverFixture(t)
	mem := vfs.NewCrashableMem()
	inj := &cloneAtEveryWrite{mem: mem, rng: rand.New(rand.NewPCG(4, 4))}
	s, _ := openSM(t, errorfs.Wrap(mem, inj), "/sm")
	f.populateOld(t, s)
	inj.armed.Store(true)
	if err := s.RecoverFromSnapshot(bytes.NewReader(f.snap), nil); err != nil {
		t.Fatal(err)
	}
	inj.armed.Store(false)
	// Pebble's cleaner may still be deleting obsolete files (writes that
	// saw armed before it was cleared): read the crash points under mu.
	inj.mu.Lock()
	clones := inj.clones
	inj.mu.Unlock()
	if got := dump(t, s); got != f.newDump {
		t.Fatalf("after recovery:\n%s", got)
	}
	if len(clones) < 20 {
		t.Fatalf("only %d crash points", len(clones))
	}
	seen := map[string]int{}
	sawNew := false
	for i, c := range clones {
		got := f.checkOldOrNew(t, c, fmt.Sprintf("crash point %d/%d", i+1, len(clones)))
		seen[got]++
		if sawNew && got == "old" && i%2 == 0 {
			// A clone that keeps no unsynced data must never go back to
			// old once a durable switch was seen.
			t.Fatalf("crash point %d: back to the old state after the switch", i+1)
		}
		sawNew = sawNew || (got == "new" && i%2 == 0)
	}
	if seen["old"] == 0 || seen["new"] == 0 {
		t.Fatalf("crash points saw %v; want both old and new", seen)
	}
	if got := f.checkOldOrNew(t, mem.CrashClone(vfs.CrashCloneCfg{}), "after return"); got != "new" {
		t.Fatal("a crash right after RecoverFromSnapshot returned lost the new state")
	}
	t.Logf("%d crash points: %v", len(clones), seen)
}

// failOwnOps fails, once, the k-th operation that the state machine itself
// (not Pebble) performs in dir: the CURRENT pointer, directory syncs, and
// creating or removing data directories.
type failOwnOps struct {
	dir   string
	k     int64
	armed atomic.Bool
	n     atomic.Int64
}

func (f *failOwnOps) String() string { return "failOwnOps" }

func (f *failOwnOps) MaybeError(op errorfs.Op) error {
	if !f.armed.Load() {
		return nil
	}
	parent, base := path.Dir(op.Path), path.Base(op.Path)
	ours := op.Path == f.dir ||
		(parent == f.dir && (base == currentFile || base == currentTmp)) ||
		(parent == f.dir && strings.HasPrefix(base, dataPrefix) && (op.Kind == errorfs.OpMkdirAll || op.Kind == errorfs.OpRemoveAll))
	if ours && f.n.Add(1) == f.k {
		return errorfs.ErrInjected
	}
	return nil
}

// TestRecoverErrors fails each of the state machine's own filesystem
// operations during RecoverFromSnapshot in turn. A failure before the
// switch leaves the old state served and on disk; a failure during or after
// it is sticky (ErrFailed) and a reopen finds old or new; success means
// new.
func TestRecoverErrors(t *testing.T) {
	f := newRecoverFixture(t)
	fired := 0
	for k := int64(1); ; k++ {
		mem := vfs.NewCrashableMem()
		inj := &failOwnOps{dir: "/sm", k: k}
		s, _ := openSM(t, errorfs.Wrap(mem, inj), "/sm")
		f.populateOld(t, s)
		inj.armed.Store(true)
		err := s.RecoverFromSnapshot(bytes.NewReader(f.snap), nil)
		inj.armed.Store(false)
		crash := mem.CrashClone(vfs.CrashCloneCfg{})
		switch {
		case err == nil:
			if got := dump(t, s); got != f.newDump {
				t.Fatalf("k=%d: recovered, but serving:\n%s", k, got)
			}
			if got := f.checkOldOrNew(t, crash, "after success"); got != "new" {
				t.Fatalf("k=%d: success but a crash goes back to old", k)
			}
		case errors.Is(err, ErrFailed):
			if _, uerr := s.Update([]sm.Entry{entry(1000, putCmd("x", "y"))}); !errors.Is(uerr, ErrFailed) {
				t.Fatalf("k=%d: Update after a failed switch: %v, want ErrFailed", k, uerr)
			}
			f.checkOldOrNew(t, crash, fmt.Sprintf("k=%d failed switch", k))
		default:
			if got := dump(t, s); got != f.oldDump {
				t.Fatalf("k=%d: failed with %v but no longer serves the old state:\n%s", k, err, got)
			}
			if got := f.checkOldOrNew(t, crash, "after error"); got != "old" {
				t.Fatalf("k=%d: failed with %v, yet a reopen finds the new state", k, err)
			}
			// The state machine still works.
			mustUpdate(t, s, entry(3, putCmd("after", "error")))
		}
		_ = s.Close()
		if inj.n.Load() < k {
			if err != nil {
				t.Fatalf("k=%d: nothing injected, yet %v", k, err)
			}
			break
		}
		fired++
	}
	if fired < 5 {
		t.Fatalf("only %d injected failures", fired)
	}
}

// smallTables makes recovery write many small sstables for the rest of t.
func smallTables(t *testing.T) {
	old := snapshotTableSize
	snapshotTableSize = 8 << 10
	t.Cleanup(func() { snapshotTableSize = old })
}

// TestCrashDuringRecoverManyTables is TestCrashDuringRecover with the
// snapshot loaded into several sstables, ingested together.
func TestCrashDuringRecoverManyTables(t *testing.T) {
	smallTables(t)
	TestCrashDuringRecover(t)
}

// failTableWrites fails, once, the k-th write to the sstables a recovery
// writes into dir (creating, writing, syncing and closing them). Pebble's
// own writes into the new store (MANIFEST, markers: a failure there is
// fatal, from a background goroutine a crash) are covered by the crash
// images of TestCrashDuringRecover.
type failTableWrites struct {
	dir   string
	k     int64
	armed atomic.Bool
	n     atomic.Int64
	op    errorfs.Op // the failed one
}

func (f *failTableWrites) String() string { return "failTableWrites" }

func (f *failTableWrites) MaybeError(op errorfs.Op) error {
	if !f.armed.Load() || op.Kind.ReadOrWrite() != errorfs.OpIsWrite || op.Kind == errorfs.OpLink || op.Kind == errorfs.OpRemove ||
		!strings.HasPrefix(op.Path, f.dir+"/snapshot-") {
		return nil
	}
	if f.n.Add(1) == f.k {
		f.op = op
		return errorfs.ErrInjected
	}
	return nil
}

// TestRecoverTableWriteErrors fails each write to the sstables of a
// RecoverFromSnapshot in turn (with several of them; links and removals are
// left alone: Pebble copies a table it cannot link, and a table it cannot
// remove once ingested stays behind as garbage): the recovery fails, the old state
// stays served and is what a reopen finds, and the next recovery, without
// failures, succeeds.
func TestRecoverTableWriteErrors(t *testing.T) {
	smallTables(t)
	f := newRecoverFixture(t)
	fired := 0
	for k := int64(1); ; k++ {
		mem := vfs.NewCrashableMem()
		inj := &failTableWrites{dir: "/sm/" + dataDirName(2), k: k}
		s, _ := openSM(t, errorfs.Wrap(mem, inj), "/sm")
		f.populateOld(t, s)
		inj.armed.Store(true)
		err := s.RecoverFromSnapshot(bytes.NewReader(f.snap), nil)
		inj.armed.Store(false)
		if inj.n.Load() < k {
			if err != nil {
				t.Fatalf("k=%d: nothing injected, yet %v", k, err)
			}
			if got := dump(t, s); got != f.newDump {
				t.Fatalf("k=%d: recovered, but serving:\n%s", k, got)
			}
			_ = s.Close()
			break
		}
		fired++
		crash := mem.CrashClone(vfs.CrashCloneCfg{})
		switch {
		case err == nil:
			t.Fatalf("k=%d: a failed write into the new store went unnoticed: %v %s", k, inj.op.Kind, inj.op.Path)
		default:
			if got := dump(t, s); got != f.oldDump {
				t.Fatalf("k=%d: failed with %v but no longer serves the old state:\n%s", k, err, got)
			}
			if got := f.checkOldOrNew(t, crash, fmt.Sprintf("k=%d", k)); got != "old" {
				t.Fatalf("k=%d: failed with %v, yet a reopen finds the new state", k, err)
			}
			if err := s.RecoverFromSnapshot(bytes.NewReader(f.snap), nil); err != nil {
				t.Fatalf("k=%d: the recovery after a failed one: %v", k, err)
			}
			if got := dump(t, s); got != f.newDump {
				t.Fatalf("k=%d: the second recovery serves:\n%s", k, got)
			}
		}
		_ = s.Close()
	}
	if fired < 10 {
		t.Fatalf("only %d injected failures", fired)
	}
	t.Logf("%d injected failures", fired)
}
