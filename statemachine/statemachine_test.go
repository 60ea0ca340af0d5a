package statemachine

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"zero", Config{}, ""},
		{"default", DefaultConfig(), ""},
		{"negative cache", Config{CacheSize: -1}, "CacheSize (-1) must be >= 0"},
		{"tiny memtable", Config{MemTableSize: 1024}, "MemTableSize (1024)"},
		{"huge memtable", Config{MemTableSize: 4 << 30}, "MemTableSize (4294967296)"},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
	d := DefaultConfig()
	if d.FS == nil || d.CacheSize != DefaultCacheSize || d.MemTableSize != DefaultMemTableSize || d.Logger == nil {
		t.Fatalf("DefaultConfig() = %+v", d)
	}
	if _, err := Open("", Config{}); err == nil {
		t.Fatal("Open accepted an empty dir")
	}
}

func TestNewFactory(t *testing.T) {
	fs := vfs.NewMem()
	var f sm.CreateOnDiskStateMachineFunc = New("/sm", Config{FS: fs})
	s := f(1, 2)
	applied, err := s.Open(nil)
	if err != nil || applied != 0 {
		t.Fatalf("Open = %d, %v", applied, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	bad := New("/bad", Config{FS: fs, CacheSize: -5})(1, 2)
	if _, err := bad.Open(nil); err == nil || !strings.Contains(err.Error(), "CacheSize (-5)") {
		t.Fatalf("invalid config surfaced as %v", err)
	}
	if _, err := bad.Lookup(AppliedQuery{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("lookup on a failed factory product: %v", err)
	}
	if err := bad.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestLifecycle(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("/sm", Config{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(AppliedQuery{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("lookup before Open: %v", err)
	}
	if _, err := s.Update([]sm.Entry{entry(1, putCmd("a", "1"))}); !errors.Is(err, ErrClosed) {
		t.Fatalf("update before Open: %v", err)
	}
	stopc := make(chan struct{})
	close(stopc)
	if _, err := s.Open(stopc); err != sm.ErrOpenStopped {
		t.Fatalf("stopped Open: %v", err)
	}
	if _, err := s.Open(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(nil); err == nil {
		t.Fatal("second Open succeeded")
	}
	// The directory is owned exclusively.
	other, _ := Open("/sm", Config{FS: fs})
	if _, err := other.Open(nil); err == nil {
		t.Fatal("a second state machine opened a locked dir")
	}
	mustUpdate(t, s, entry(1, putCmd("a", "1")))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, call := range []func() error{
		func() error { _, err := s.Lookup(GetQuery{Key: []byte("a")}); return err },
		func() error { _, err := s.Update([]sm.Entry{entry(2, putCmd("a", "1"))}); return err },
		func() error { return s.Sync() },
		func() error { _, err := s.PrepareSnapshot(); return err },
		func() error { return s.RecoverFromSnapshot(strings.NewReader(""), nil) },
		func() error { _, err := s.Open(nil); return err },
	} {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Fatalf("after Close: %v, want ErrClosed", err)
		}
	}
	// The lock was released: the store reopens with its data.
	re, applied := openSM(t, fs, "/sm")
	if applied != 1 {
		t.Fatalf("reopened at %d", applied)
	}
	if g := mustLookup[GetResult](t, re, &GetQuery{Key: []byte("a")}); g.KV == nil || string(g.KV.Value) != "1" {
		t.Fatalf("reopened: %+v", g)
	}
}

// TestLookupRacesClose runs lookups while the state machine closes: each
// returns a result or ErrClosed, never a crash.
func TestLookupRacesClose(t *testing.T) {
	s, _ := openSM(t, vfs.NewMem(), "/sm")
	mustUpdate(t, s, entry(1, putCmd("a", "1")))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if _, err := s.Lookup(RangeQuery{}); err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("lookup: %v", err)
					return
				}
			}
		}()
	}
	_ = s.Close()
	wg.Wait()
}

func TestLookupQueries(t *testing.T) {
	s, _ := openSM(t, vfs.NewMem(), "/sm")
	mustUpdate(t, s, entry(3, putCmd("a", "1"), putCmd("b", "2")))
	for _, q := range []any{nil, "a", []byte("a"), 7, (*GetQuery)(nil), (*RangeQuery)(nil), GetQuery{}, RangeQuery{Limit: -1}} {
		if _, err := s.Lookup(q); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("Lookup(%#v) = %v, want ErrInvalidQuery", q, err)
		}
	}
	if got := mustLookup[uint64](t, s, &AppliedQuery{}); got != 3 {
		t.Fatalf("applied %d", got)
	}
	r := mustLookup[RangeResult](t, s, &RangeQuery{Limit: 1, KeysOnly: true})
	if len(r.KVs) != 1 || r.KVs[0].Value != nil || !r.More || r.KVs[0].ModRevision != 3 {
		t.Fatalf("range: %+v", r)
	}
	// Results own their memory: later writes don't change them.
	g := mustLookup[GetResult](t, s, GetQuery{Key: []byte("a")})
	mustUpdate(t, s, entry(4, putCmd("a", "changed")))
	if string(g.KV.Value) != "1" || string(g.KV.Key) != "a" {
		t.Fatalf("result changed under us: %+v", g.KV)
	}
}

func TestUpdateIndexBackwardsPanics(t *testing.T) {
	s, _ := openSM(t, vfs.NewMem(), "/sm")
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "entry index 4 follows 5") {
			t.Fatalf("recovered %v", r)
		}
	}()
	_, _ = s.Update([]sm.Entry{entry(5, putCmd("a", "1")), entry(4, putCmd("a", "2"))})
}

func TestUpdateSetsResults(t *testing.T) {
	s, _ := openSM(t, vfs.NewMem(), "/sm")
	ents := []sm.Entry{
		entry(1, putCmd("a", "1")),
		{Index: 2},
		{Index: 3, Cmd: []byte{9}},
	}
	out := mustUpdate(t, s, ents...)
	if len(out) != 3 || out[0].Index != 1 || out[2].Index != 3 {
		t.Fatalf("entries reordered: %+v", out)
	}
	if rs, err := ParseResult(out[0].Result); err != nil || len(rs) != 1 || !rs[0].Succeeded || rs[0].Revision != 1 {
		t.Fatalf("put: %+v %v", rs, err)
	}
	if out[0].Result.Value != ResultApplied {
		t.Fatalf("value %d", out[0].Result.Value)
	}
	if rs, err := ParseResult(out[1].Result); err != nil || len(rs) != 0 {
		t.Fatalf("no-op: %+v %v", rs, err)
	}
	if out[2].Result.Value != ResultCorrupt {
		t.Fatalf("corrupt entry value %d", out[2].Result.Value)
	}
	if _, err := ParseResult(out[2].Result); !errors.Is(err, ErrCorruptCommand) || !strings.Contains(err.Error(), "codec version 9") {
		t.Fatalf("corrupt: %v", err)
	}
	replay := mustUpdate(t, s, entry(3, putCmd("a", "x")))
	if replay[0].Result.Value != ResultReplayed {
		t.Fatalf("replayed entry value %d", replay[0].Result.Value)
	}
	if _, err := ParseResult(replay[0].Result); err == nil {
		t.Fatal("ParseResult of a replayed entry succeeded")
	}
	if _, err := ParseResult(sm.Result{Value: 99}); !errors.Is(err, ErrCorruptCommand) {
		t.Fatalf("unknown value: %v", err)
	}
	if got := mustLookup[uint64](t, s, AppliedQuery{}); got != 3 {
		t.Fatalf("applied %d", got)
	}
}

// TestOpenRejectsBadStores covers a corrupt pointer file and a store format
// this binary does not know.
func TestOpenRejectsBadStores(t *testing.T) {
	fs := vfs.NewMem()
	s, _ := openSM(t, fs, "/sm")
	_ = s.Close()
	f, _ := fs.Create("/sm/"+currentFile, vfs.WriteCategoryUnspecified)
	_, _ = f.Write([]byte("garbage\n"))
	_ = f.Close()
	s2, _ := Open("/sm", Config{FS: fs})
	if _, err := s2.Open(nil); !errors.Is(err, ErrCorruptStore) {
		t.Fatalf("corrupt CURRENT: %v", err)
	}
	if err := writeCurrent(fs, "/sm", 1); err != nil {
		t.Fatal(err)
	}
	s3, _ := openSM(t, fs, "/sm")
	if err := s3.db.Set(sysFormatKey, be64(storeFormat+1), nil); err != nil {
		t.Fatal(err)
	}
	_ = s3.Close()
	s4, _ := Open("/sm", Config{FS: fs})
	if _, err := s4.Open(nil); !errors.Is(err, ErrCorruptStore) || !strings.Contains(err.Error(), "store format 2") {
		t.Fatalf("unknown format: %v", err)
	}
	// The failed Opens released the lock.
	if err := writeCurrent(fs, "/sm", 1); err != nil {
		t.Fatal(err)
	}
}

// TestWriteCurrentDurable: once writeCurrent returns, a crash that keeps no
// unsynced data still finds the new pointer.
func TestWriteCurrentDurable(t *testing.T) {
	fs := vfs.NewCrashableMem()
	if err := fs.MkdirAll("/sm", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syncDir(fs, "/"); err != nil {
		t.Fatal(err)
	}
	for gen := uint64(1); gen <= 3; gen++ {
		if err := writeCurrent(fs, "/sm", gen); err != nil {
			t.Fatal(err)
		}
		got, found, err := readCurrent(fs.CrashClone(vfs.CrashCloneCfg{}), "/sm")
		if err != nil || !found || got != gen {
			t.Fatalf("after a crash CURRENT names %d (found %v, %v), want %d", got, found, err, gen)
		}
	}
}
