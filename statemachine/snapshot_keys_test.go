package statemachine

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// SaveSnapshot counts the user keys it writes (not metadata, history or
// system rows), and SavedSnapshotQuery finds the count by the Raft index
// of the snapshot, which may be above the applied index.
func TestSavedSnapshotKeys(t *testing.T) {
	s, _ := openSM(t, vfs.NewMem(), "sm")
	if got := mustLookup[SavedSnapshot](t, s, SavedSnapshotQuery{Index: 100}); got.Found {
		t.Fatalf("before any save: %+v", got)
	}
	var cmds []Command
	for i := range 5 {
		cmds = append(cmds, putCmd(fmt.Sprintf("k%d", i), "v"))
	}
	mustUpdate(t, s, entry(1, cmds...),
		entry(2, Command{Ops: []Op{{Type: OpMetaPut, Key: []byte("member/1"), Value: []byte("a")}}}),
		entry(3, Command{Ops: []Op{{Type: OpDelete, Key: []byte("k0")}}}),
		entry(4, putCmd("k1", "again")))
	saveSnapshot(t, s) // applied 4: k1..k4

	// Raft's index of the snapshot may be above the applied index (config
	// changes never reach Update).
	want := SavedSnapshot{Applied: 4, Keys: 4, Found: true}
	for _, idx := range []uint64{4, 6} {
		if got := mustLookup[SavedSnapshot](t, s, SavedSnapshotQuery{Index: idx}); got != want {
			t.Fatalf("at index %d: %+v, want %+v", idx, got, want)
		}
	}
	if got := mustLookup[SavedSnapshot](t, s, SavedSnapshotQuery{Index: 3}); got.Found {
		t.Fatalf("at index 3, before the only save: %+v", got)
	}

	mustUpdate(t, s, entry(7, putCmd("k9", "v")))
	saveSnapshot(t, s) // applied 7: 5 keys
	for idx, want := range map[uint64]SavedSnapshot{
		6: {Applied: 4, Keys: 4, Found: true},
		7: {Applied: 7, Keys: 5, Found: true},
		9: {Applied: 7, Keys: 5, Found: true},
	} {
		if got := mustLookup[SavedSnapshot](t, s, SavedSnapshotQuery{Index: idx}); got != want {
			t.Fatalf("at index %d: %+v, want %+v", idx, got, want)
		}
	}

	// A save that fails is not recorded.
	mustUpdate(t, s, entry(8, putCmd("k8", "v")))
	p, err := s.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSnapshot(p, &failingWriter{n: 10, err: fmt.Errorf("disk full")}, nil); err == nil {
		t.Fatal("save into a failing writer succeeded")
	}
	if got := mustLookup[SavedSnapshot](t, s, SavedSnapshotQuery{Index: 8}); got.Applied != 7 {
		t.Fatalf("after a failed save at 8: %+v, want the save at 7", got)
	}
}

// Only the last savedKept saves are kept.
func TestSavedSnapshotKept(t *testing.T) {
	s, _ := openSM(t, vfs.NewMem(), "sm")
	for i := uint64(1); i <= savedKept+2; i++ {
		mustUpdate(t, s, entry(i, putCmd(fmt.Sprintf("k%d", i), "v")))
		saveSnapshot(t, s)
	}
	if got := mustLookup[SavedSnapshot](t, s, SavedSnapshotQuery{Index: 2}); got.Found {
		t.Fatalf("save 2 should be forgotten: %+v", got)
	}
	if got := mustLookup[SavedSnapshot](t, s, SavedSnapshotQuery{Index: 3}); got != (SavedSnapshot{Applied: 3, Keys: 3, Found: true}) {
		t.Fatalf("save 3: %+v", got)
	}
}
