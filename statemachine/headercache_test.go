package statemachine

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

// getHeader returns the header of key; exists=false when it is absent.
func getHeader(t *testing.T, s *StateMachine, key string) keyMeta {
	t.Helper()
	r := mustLookup[GetResult](t, s, GetQuery{Key: []byte(key)})
	if r.KV == nil {
		return keyMeta{}
	}
	return keyMeta{exists: true, create: r.KV.CreateRevision, mod: r.KV.ModRevision, version: r.KV.Version}
}

func wantKV(t *testing.T, s *StateMachine, key string, create, mod, version uint64) {
	t.Helper()
	got := getHeader(t, s, key)
	if want := (keyMeta{exists: version > 0, create: create, mod: mod, version: version}); got != want {
		t.Fatalf("%s: create/mod/version = %d/%d/%d, want %d/%d/%d", key,
			got.create, got.mod, got.version, create, mod, version)
	}
}

// TestHeaderCacheKeepsRevisions overwrites a key in many Updates (one entry
// each, so every put after the first finds its header in the cache), deletes
// it, creates it again, and checks create/mod/version after each step,
// against a state machine without the cache that applies the same entries.
func TestHeaderCacheKeepsRevisions(t *testing.T) {
	s, _ := openSM(t, vfs.NewMem(), "/sm")
	plain, _ := openSM(t, vfs.NewMem(), "/plain")
	plain.apply.cache = newHeaderCache(0)
	index := uint64(0)
	apply := func(cmds ...Command) {
		t.Helper()
		index++
		mustUpdate(t, s, entry(index, cmds...))
		mustUpdate(t, plain, entry(index, cmds...))
	}
	for i := range 50 {
		apply(putCmd("a", fmt.Sprint(i)))
		wantKV(t, s, "a", 1, index, uint64(i+1))
	}
	apply(putCmd("a", "x"), putCmd("a", "y")) // two puts in one entry
	wantKV(t, s, "a", 1, index, 52)
	apply(delCmd("a"))
	wantKV(t, s, "a", 0, 0, 0)
	apply(delCmd("a")) // deleting an absent key changes nothing
	apply(Command{Compares: []Compare{{Key: []byte("a")}}, Ops: []Op{{Type: OpPut, Key: []byte("a"), Value: []byte("new")}}})
	created := index
	wantKV(t, s, "a", created, created, 1)
	for range 5 {
		apply(putCmd("a", "again"))
	}
	wantKV(t, s, "a", created, index, 6)
	if got, want := dump(t, s), dump(t, plain); got != want {
		t.Fatalf("with the cache:\n%s\nwithout:\n%s", got, want)
	}
	if _, ok := s.apply.cache.get([]byte("ua")); !ok {
		t.Fatal("the header of a is not in the cache")
	}
}

// TestHeaderCacheDroppedOnRecover fills dst's cache with a key's header,
// replaces dst's store by a snapshot in which that key has another history,
// and checks that the next put continues the snapshot's history.
func TestHeaderCacheDroppedOnRecover(t *testing.T) {
	dst, _ := openSM(t, vfs.NewMem(), "/dst")
	for i := uint64(1); i <= 10; i++ {
		mustUpdate(t, dst, entry(i, putCmd("a", "dst")))
	}
	wantKV(t, dst, "a", 1, 10, 10)

	src, _ := openSM(t, vfs.NewMem(), "/src")
	mustUpdate(t, src, entry(20, putCmd("b", "src")))
	mustUpdate(t, src, entry(30, putCmd("a", "src")), entry(31, putCmd("a", "src")))
	recoverFrom(t, src, dst)
	wantKV(t, dst, "a", 30, 31, 2)

	mustUpdate(t, dst, entry(40, putCmd("a", "after")), entry(41, putCmd("b", "after")))
	mustUpdate(t, dst, entry(42, putCmd("a", "after")))
	wantKV(t, dst, "a", 30, 42, 4)
	wantKV(t, dst, "b", 20, 41, 2)
}

// recoverFrom streams a snapshot of src into dst.
func recoverFrom(t *testing.T, src, dst *StateMachine) {
	t.Helper()
	p, err := src.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := src.SaveSnapshot(p, &buf, nil); err != nil {
		t.Fatal(err)
	}
	if err := dst.RecoverFromSnapshot(io.Reader(&buf), nil); err != nil {
		t.Fatal(err)
	}
}

// TestHeaderCacheBounded checks that the cache stays within its bound and
// that evicted headers are read again from the store.
func TestHeaderCacheBounded(t *testing.T) {
	s, _ := openSM(t, vfs.NewMem(), "/sm")
	const keys = 100
	s.apply.cache = newHeaderCache(10 * (len("ukey00") + headerEntryOverhead))
	index := uint64(0)
	for round := range 3 {
		var ents []sm.Entry
		for i := range keys {
			index++
			ents = append(ents, entry(index, putCmd(fmt.Sprintf("key%02d", i), "v")))
		}
		for _, e := range ents {
			mustUpdate(t, s, e) // one Update each: the overlay does not help
		}
		if n := len(s.apply.cache.m); n > 10 {
			t.Fatalf("cache holds %d headers, bound 10", n)
		}
		for i := range keys {
			created := uint64(i + 1)
			wantKV(t, s, fmt.Sprintf("key%02d", i), created, created+uint64(round*keys), uint64(round+1))
		}
	}
}
