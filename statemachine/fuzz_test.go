package statemachine

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

// FuzzDecodeCommands: any input either fails with ErrCorruptCommand or
// decodes to commands whose encoding is the input itself (the format is
// canonical), with no empty key and no unknown op.
func FuzzDecodeCommands(f *testing.F) {
	for _, cmds := range [][]Command{
		{},
		{{}},
		{putCmd("k", "v")},
		{{Ops: []Op{{Type: OpDelete, Key: []byte("k")}, {Type: OpMetaPut, Key: []byte("m"), Value: []byte("x")}, {Type: OpMetaDelete, Key: []byte("m")}}}},
		{{Compares: []Compare{{Key: []byte("a"), ModRevision: 0}, {Key: []byte("b"), ModRevision: 1 << 40}}, Ops: []Op{{Type: OpPut, Key: []byte("a"), Value: nil}}}},
		benchCommands(4),
	} {
		f.Add(EncodeCommands(nil, cmds))
	}
	f.Add([]byte{})
	f.Add([]byte{2, 0})
	f.Add([]byte{1, 0x81, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, err := DecodeCommands(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptCommand) {
				t.Fatalf("error %v does not wrap ErrCorruptCommand", err)
			}
			return
		}
		for _, c := range cmds {
			for _, cmp := range c.Compares {
				if len(cmp.Key) == 0 {
					t.Fatal("decoded an empty compare key")
				}
			}
			for _, op := range c.Ops {
				if len(op.Key) == 0 || !op.Type.valid() {
					t.Fatalf("decoded invalid op %+v", op)
				}
			}
		}
		if again := EncodeCommands(nil, cmds); !bytes.Equal(again, b) {
			t.Fatalf("not canonical: %x re-encodes as %x", b, again)
		}
	})
}

// FuzzDecodeResults: same properties for results.
func FuzzDecodeResults(f *testing.F) {
	f.Add(EncodeResults(nil, nil))
	f.Add(EncodeResults(nil, []Result{{Revision: 1, Succeeded: true, Deleted: 3}}))
	f.Add(EncodeResults(nil, []Result{{Revision: 9, Current: []uint64{0, 1 << 63}}, {Revision: 9, Succeeded: true}}))
	f.Add([]byte{1, 1, 3, 2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := DecodeResults(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptCommand) {
				t.Fatalf("error %v does not wrap ErrCorruptCommand", err)
			}
			return
		}
		if again := EncodeResults(nil, rs); !bytes.Equal(again, b) {
			t.Fatalf("not canonical: %x re-encodes as %x", b, again)
		}
	})
}

// FuzzRecoverFromSnapshot feeds arbitrary bytes to RecoverFromSnapshot on a
// MemFS. It must never panic; on error the old state must be intact and
// still served, and no partial store may remain; on success the store must
// be self-consistent and survive a reopen.
func FuzzRecoverFromSnapshot(f *testing.F) {
	src, _ := openSM(f, vfs.NewMem(), "/src")
	mustUpdate(f, src,
		entry(1, putCmd("a", "1"), putCmd("b", "")),
		entry(2, Command{Ops: []Op{{Type: OpMetaPut, Key: []byte("member/1"), Value: []byte("addr")}}}),
		entry(3, Command{Compares: []Compare{{Key: []byte("a"), ModRevision: 1}}, Ops: []Op{{Type: OpPut, Key: []byte("a"), Value: []byte("2")}}}),
	)
	good := saveSnapshot(f, src)
	empty, _ := openSM(f, vfs.NewMem(), "/empty")
	f.Add(good)
	f.Add(saveSnapshot(f, empty))
	f.Add(good[:len(good)/2])
	f.Add(good[:17])
	f.Add([]byte{})
	f.Add(append(bytes.Clone(good[:17]), 0x01, 0xff, 0xff, 0xff, 0x7f))
	for _, i := range []int{0, 8, 12, 17, 20, len(good) - 5, len(good) - 1} {
		b := bytes.Clone(good)
		b[i] ^= 1
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fs := vfs.NewMem()
		s, _ := openSM(t, fs, "/sm")
		mustUpdate(t, s, entry(7, putCmd("old", "state")))
		before := dump(t, s)
		err := s.RecoverFromSnapshot(bytes.NewReader(b), nil)
		if err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("error %v does not wrap ErrCorruptSnapshot", err)
			}
			if got := dump(t, s); got != before {
				t.Fatalf("failed recovery changed the state:\n%s", got)
			}
			names, _ := fs.List("/sm")
			for _, n := range names {
				if strings.HasPrefix(n, dataPrefix) && n != dataDirName(1) {
					t.Fatalf("failed recovery left %s", n)
				}
			}
			mustUpdate(t, s, entry(8, putCmd("still", "works")))
			return
		}
		after := dump(t, s)
		applied := mustLookup[uint64](t, s, AppliedQuery{})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		re, reApplied := openSM(t, fs, "/sm")
		if reApplied != applied || dump(t, re) != after {
			t.Fatal("recovered state did not survive a reopen")
		}
		// The recovered store accepts updates, and snapshots back to the
		// same bytes (the format is canonical).
		if !bytes.HasPrefix(b, saveSnapshot(t, re)) {
			t.Fatal("re-saving a recovered snapshot gives other bytes")
		}
		mustUpdate(t, re, []sm.Entry{entry(applied+1, putCmd("new", "x"))}...)
	})
}
