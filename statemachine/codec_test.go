package statemachine

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestCommandsRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte{0xab}, 100_000)
	for _, tc := range []struct {
		name string
		cmds []Command
	}{
		{"no commands", []Command{}},
		{"empty command", []Command{{}}},
		{"put", []Command{putCmd("k", "v")}},
		{"put empty value", []Command{{Ops: []Op{{Type: OpPut, Key: []byte("k"), Value: []byte{}}}}}},
		{"delete", []Command{{Ops: []Op{{Type: OpDelete, Key: []byte("k")}}}}},
		{"meta ops", []Command{{Ops: []Op{
			{Type: OpMetaPut, Key: []byte("member/1"), Value: []byte("addr")},
			{Type: OpMetaDelete, Key: []byte("member/2")},
		}}}},
		{"txn", []Command{{
			Compares: []Compare{{Key: []byte("a"), ModRevision: 0}, {Key: []byte("b"), ModRevision: math.MaxUint64}},
			Ops:      []Op{{Type: OpPut, Key: []byte("a"), Value: []byte("1")}, {Type: OpDelete, Key: []byte("b")}},
		}}},
		{"compare only", []Command{{Compares: []Compare{{Key: []byte("a"), ModRevision: 7}}}}},
		{"binary keys and large value", []Command{{Ops: []Op{{Type: OpPut, Key: []byte{0, 0xff, 0}, Value: big}}}}},
		{"many commands", func() []Command {
			var cs []Command
			for i := range 300 {
				cs = append(cs, putCmd(strings.Repeat("k", i+1), strings.Repeat("v", i)))
			}
			return cs
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := EncodeCommands(nil, tc.cmds)
			if len(b) != commandsSize(tc.cmds) {
				t.Fatalf("encoded %d bytes, commandsSize says %d", len(b), commandsSize(tc.cmds))
			}
			got, err := DecodeCommands(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normCommands(got), normCommands(tc.cmds)) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.cmds)
			}
			if again := EncodeCommands([]byte("prefix"), got); !bytes.Equal(again[6:], b) || string(again[:6]) != "prefix" {
				t.Fatalf("re-encoding differs or lost the prefix")
			}
		})
	}
}

// normCommands maps nil and empty slices to nil so DeepEqual compares
// meaning, not allocation.
func normCommands(cs []Command) []Command {
	out := make([]Command, 0, len(cs))
	for _, c := range cs {
		var n Command
		for _, cmp := range c.Compares {
			n.Compares = append(n.Compares, Compare{Key: bytes.Clone(cmp.Key), ModRevision: cmp.ModRevision})
		}
		for _, op := range c.Ops {
			o := Op{Type: op.Type, Key: bytes.Clone(op.Key)}
			if op.Type.isPut() {
				o.Value = append([]byte{}, op.Value...)
			}
			n.Ops = append(n.Ops, o)
		}
		out = append(out, n)
	}
	return out
}

// TestCommandsGolden pins the bytes of the version-1 format: they are in
// Raft logs and snapshots and must never change meaning.
func TestCommandsGolden(t *testing.T) {
	cmds := []Command{
		putCmd("a", "1"),
		{
			Compares: []Compare{{Key: []byte("b"), ModRevision: 300}},
			Ops: []Op{
				{Type: OpDelete, Key: []byte("b")},
				{Type: OpMetaPut, Key: []byte("m"), Value: nil},
				{Type: OpMetaDelete, Key: []byte("n")},
			},
		},
	}
	const want = "01" + "02" + // version, 2 commands
		"00" + "01" + "01" + "0161" + "0131" + // no compares, 1 op: put "a"="1"
		"01" + "0162" + "ac02" + // 1 compare: "b" mod 300
		"03" + "02" + "0162" + "03" + "016d" + "00" + "04" + "016e" // delete b, meta-put m="", meta-delete n
	if got := hex.EncodeToString(EncodeCommands(nil, cmds)); got != want {
		t.Fatalf("encoding changed:\n got %s\nwant %s", got, want)
	}
	rs := []Result{{Revision: 5, Succeeded: true, Deleted: 2}, {Revision: 6, Current: []uint64{0, 300}}}
	const wantRes = "01" + "02" + "05" + "01" + "02" + "00" + "06" + "00" + "00" + "02" + "00" + "ac02"
	if got := hex.EncodeToString(EncodeResults(nil, rs)); got != wantRes {
		t.Fatalf("result encoding changed:\n got %s\nwant %s", got, wantRes)
	}
	if OpPut != 1 || OpDelete != 2 || OpMetaPut != 3 || OpMetaDelete != 4 || CodecVersion != 1 {
		t.Fatal("persisted constants renumbered")
	}
}

func TestDecodeCommandsErrors(t *testing.T) {
	valid := EncodeCommands(nil, []Command{{
		Compares: []Compare{{Key: []byte("c"), ModRevision: 1}},
		Ops:      []Op{{Type: OpPut, Key: []byte("k"), Value: []byte("v")}},
	}})
	for _, tc := range []struct {
		name, hex, want string
	}{
		{"empty", "", "empty command batch"},
		{"version 0", "0000", "codec version 0"},
		{"version 2", "0200", "codec version 2"},
		{"trailing byte", hex.EncodeToString(valid) + "00", "trailing"},
		{"unknown op 0", "0101" + "00" + "01" + "00" + "016b", "unknown op type 0"},
		{"unknown op 5", "0101" + "00" + "01" + "05" + "016b", "unknown op type 5"},
		{"unknown op 255", "0101" + "00" + "01" + "ff" + "016b", "unknown op type 255"},
		{"empty op key", "0102" + "00" + "01" + "02" + "00" + "00" + "01" + "02" + "016b", "empty key"},
		{"empty put key", "0101" + "00" + "01" + "01" + "00" + "0176", "empty key"},
		{"empty compare key", "0101" + "01" + "00" + "00" + "00", "empty key"},
		{"command count too large", "0105" + "0000", "count 5 exceeds"},
		{"op count too large", "0101" + "00" + "09" + "02016b", "count 9 exceeds"},
		{"key length too large", "0101" + "00" + "01" + "02" + "05" + "6b6b", "length 5 exceeds"},
		{"value length too large", "0101" + "00" + "01" + "01" + "016b" + "05" + "76", "length 5 exceeds"},
		{"truncated varint", "0181", "truncated varint"},
		{"varint overflow", "01" + "ffffffffffffffffff02", "overflows"},
		{"non-canonical varint", "01" + "8100" + "0000", "non-canonical"},
		{"non-canonical modrev", "0101" + "01" + "0163" + "8000" + "00", "non-canonical"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(tc.hex)
			if err != nil {
				t.Fatal(err)
			}
			cmds, err := DecodeCommands(b)
			if !errors.Is(err, ErrCorruptCommand) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeCommands(%s) = %v, %v; want error containing %q", tc.hex, cmds, err, tc.want)
			}
		})
	}
	// Every proper prefix of a valid encoding is truncated.
	for i := range len(valid) {
		if _, err := DecodeCommands(valid[:i]); !errors.Is(err, ErrCorruptCommand) {
			t.Fatalf("prefix of %d bytes: err %v", i, err)
		}
	}
}

func TestResultsRoundTrip(t *testing.T) {
	for _, rs := range [][]Result{
		{},
		{{Revision: 1, Succeeded: true}},
		{{Revision: math.MaxUint64, Succeeded: true, Deleted: math.MaxUint64}},
		{{Revision: 9, Current: []uint64{0, 3, math.MaxUint64}}, {Revision: 9, Succeeded: true, Deleted: 1}},
	} {
		b := EncodeResults(nil, rs)
		got, err := DecodeResults(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(rs) {
			t.Fatalf("got %d results, want %d", len(got), len(rs))
		}
		for i := range rs {
			if len(rs[i].Current) == 0 {
				rs[i].Current = nil
			}
		}
		if len(rs) > 0 && !reflect.DeepEqual(got, rs) {
			t.Fatalf("round trip: got %+v want %+v", got, rs)
		}
	}
}

func TestDecodeResultsErrors(t *testing.T) {
	valid := EncodeResults(nil, []Result{{Revision: 3, Current: []uint64{1, 2}}})
	for _, tc := range []struct{ name, hex, want string }{
		{"empty", "", "empty result batch"},
		{"version", "0700", "codec version 7"},
		{"trailing", hex.EncodeToString(valid) + "01", "trailing"},
		{"bad flags", "0101" + "03" + "02" + "00" + "00", "unknown result flags"},
		{"count too large", "0102" + "03010000", "count 2 exceeds"},
		{"current count too large", "0101" + "03" + "00" + "00" + "05" + "01", "count 5 exceeds"},
		{"non-canonical", "0101" + "8300" + "01" + "00" + "00", "non-canonical"},
		{"overflow", "0101" + "ffffffffffffffffff7f" + "01" + "00" + "00", "overflows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := hex.DecodeString(tc.hex)
			rs, err := DecodeResults(b)
			if !errors.Is(err, ErrCorruptCommand) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeResults(%s) = %v, %v; want error containing %q", tc.hex, rs, err, tc.want)
			}
		})
	}
	for i := range len(valid) {
		if _, err := DecodeResults(valid[:i]); !errors.Is(err, ErrCorruptCommand) {
			t.Fatalf("prefix of %d bytes: err %v", i, err)
		}
	}
}

func TestCodecAllocations(t *testing.T) {
	cmds := benchCommands(64)
	buf := make([]byte, 0, commandsSize(cmds))
	if n := testing.AllocsPerRun(100, func() { buf = EncodeCommands(buf[:0], cmds) }); n != 0 {
		t.Errorf("EncodeCommands into a large enough buffer: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = EncodeCommands(nil, cmds) }); n != 1 {
		t.Errorf("EncodeCommands(nil): %v allocs, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := DecodeCommands(buf); err != nil {
			t.Fatal(err)
		}
	}); n > 3 {
		t.Errorf("DecodeCommands: %v allocs, want <= 3", n)
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ in, want []byte }{
		{nil, nil},
		{[]byte{}, nil},
		{[]byte("a"), []byte("b")},
		{[]byte("ab"), []byte("ac")},
		{[]byte{'a', 0xff}, []byte("b")},
		{[]byte{0xff, 0xff}, nil},
		{[]byte{0x01, 0xfe, 0xff}, []byte{0x01, 0xff}},
	} {
		in := bytes.Clone(tc.in)
		if got := PrefixEnd(in); !bytes.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("PrefixEnd(%x) = %x, want %x", tc.in, got, tc.want)
		}
		if !bytes.Equal(in, tc.in) {
			t.Errorf("PrefixEnd modified its input")
		}
	}
}

func TestOpTypeString(t *testing.T) {
	for op, want := range map[OpType]string{OpPut: "put", OpDelete: "delete", OpMetaPut: "meta-put", OpMetaDelete: "meta-delete", 9: "OpType(9)"} {
		if got := op.String(); got != want {
			t.Errorf("%d: %q, want %q", op, got, want)
		}
	}
}
