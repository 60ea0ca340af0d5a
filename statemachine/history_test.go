package statemachine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

func history(t *testing.T, s *StateMachine, q HistoryQuery) HistoryResult {
	t.Helper()
	v, err := s.Lookup(q)
	if err != nil {
		t.Fatal(err)
	}
	return v.(HistoryResult)
}

func describe(es []Event) string {
	var b bytes.Buffer
	for _, e := range es {
		switch e.Type {
		case EventPut:
			fmt.Fprintf(&b, "put %s=%s@%d", e.Key, e.Value, e.Revision)
			if e.Created {
				b.WriteString("+")
			}
		case EventDelete:
			fmt.Fprintf(&b, "del %s@%d", e.Key, e.Revision)
		}
		b.WriteString(" ")
	}
	return b.String()
}

func TestHistoryRecordsEveryUserChange(t *testing.T) {
	s, _ := openSM(t, vfs.NewMem(), "/sm")
	mustUpdate(t, s,
		entry(1, putCmd("a", "1"), putCmd("b", "1")),
		entry(2, putCmd("a", "2")),
		sm.Entry{Index: 3}, // a no-op: no event
		entry(4, delCmd("a"), delCmd("missing")),
		entry(5, Command{Ops: []Op{{Type: OpMetaPut, Key: []byte("member/1"), Value: []byte("x")}}}),
		entry(6, putCmd("ab", "1"), putCmd("c", "")),
	)
	for _, tc := range []struct {
		name string
		q    HistoryQuery
		want string
	}{
		{"all", HistoryQuery{From: 1, Key: []byte{}, End: []byte{0}}, "put a=1@1+ put b=1@1+ put a=2@2 del a@4 put ab=1@6+ put c=@6+ "},
		{"one key", HistoryQuery{From: 1, Key: []byte("a")}, "put a=1@1+ put a=2@2 del a@4 "},
		{"prefix a", HistoryQuery{From: 1, Key: []byte("a"), End: PrefixEnd([]byte("a"))}, "put a=1@1+ put a=2@2 del a@4 put ab=1@6+ "},
		{"range [b, c)", HistoryQuery{From: 1, Key: []byte("b"), End: []byte("c")}, "put b=1@1+ "},
		{"from 3", HistoryQuery{From: 3, Key: []byte{}, End: []byte{0}}, "del a@4 put ab=1@6+ put c=@6+ "},
		{"from the future", HistoryQuery{From: 9, Key: []byte{}, End: []byte{0}}, ""},
	} {
		res := history(t, s, tc.q)
		if got := describe(res.Events); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
		if res.Applied != 6 || res.More || res.Next != max(tc.q.From, 7) {
			t.Errorf("%s: applied %d next %d more %v", tc.name, res.Applied, res.Next, res.More)
		}
	}
	// Pages never split a revision.
	res := history(t, s, HistoryQuery{From: 1, Key: []byte{}, End: []byte{0}, Limit: 1})
	if got := describe(res.Events); got != "put a=1@1+ put b=1@1+ " || !res.More || res.Next != 2 {
		t.Fatalf("page of 1: %q more %v next %d", got, res.More, res.Next)
	}
}

func TestHistoryCompaction(t *testing.T) {
	s, err := Open("/sm", Config{FS: vfs.NewMem(), Logger: testLogger(t), HistoryRevisions: 100})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := uint64(1); i <= 1000; i++ {
		mustUpdate(t, s, entry(i, putCmd("k", fmt.Sprint(i))))
	}
	_, err = s.Lookup(HistoryQuery{From: 1, Key: []byte("k")})
	var ce *CompactedError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCompacted) {
		t.Fatalf("revision 1 after 1000 with 100 kept: err %v", err)
	}
	// Everything from the floor on is there, and at least the last 100.
	if ce.Floor > 901 {
		t.Fatalf("floor %d: fewer than 100 revisions kept", ce.Floor)
	}
	res := history(t, s, HistoryQuery{From: ce.Floor, Key: []byte("k")})
	if uint64(len(res.Events)) != 1001-ce.Floor || res.Events[0].Revision != ce.Floor {
		t.Fatalf("from floor %d: %d events, first %+v", ce.Floor, len(res.Events), res.Events[0])
	}
	// The dropped events are gone from the store, not just hidden.
	it, _ := s.db.NewIter(nil)
	defer it.Close()
	n := 0
	for ok := it.SeekGE([]byte{nsHist}); ok && it.Key()[0] == nsHist; ok = it.Next() {
		n++
	}
	if n != len(res.Events) {
		t.Fatalf("%d events stored, %d served", n, len(res.Events))
	}
}

func TestHistoryDisabled(t *testing.T) {
	s, err := Open("/sm", Config{FS: vfs.NewMem(), Logger: testLogger(t), HistoryRevisions: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustUpdate(t, s, entry(1, putCmd("k", "v")))
	if _, err := s.Lookup(HistoryQuery{From: 1, Key: []byte("k")}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("history read with none kept: %v", err)
	}
}

// A snapshot carries the history and its floor.
func TestHistoryInSnapshot(t *testing.T) {
	src, _ := openSM(t, vfs.NewMem(), "/src")
	mustUpdate(t, src, entry(1, putCmd("a", "1")), entry(2, delCmd("a")))
	p, err := src.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := src.SaveSnapshot(p, &buf, nil); err != nil {
		t.Fatal(err)
	}
	dst, _ := openSM(t, vfs.NewMem(), "/dst")
	if err := dst.RecoverFromSnapshot(io.Reader(&buf), nil); err != nil {
		t.Fatal(err)
	}
	res := history(t, dst, HistoryQuery{From: 1, Key: []byte("a")})
	if got := describe(res.Events); got != "put a=1@1+ del a@2 " || res.Floor != 1 {
		t.Fatalf("recovered history %q floor %d", got, res.Floor)
	}
}

func delCmd(k string) Command {
	return Command{Ops: []Op{{Type: OpDelete, Key: []byte(k)}}}
}

// Large values: the byte cap drops old revisions long before the
// revision count would.
func TestHistoryByteCap(t *testing.T) {
	s, err := Open(t.TempDir(), Config{Logger: testLogger(t), HistoryRevisions: 1_000_000, HistoryBytes: 2 << 20, MemTableSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, 4096)          // random: Pebble compresses blocks
	for i := uint64(1); i <= 5000; i++ { // ~20 MB of events
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		mustUpdate(t, s, entry(i, putCmd(fmt.Sprint("k", i%100), string(value))))
	}
	res := history(t, s, HistoryQuery{From: 0})
	if res.Floor < 2500 {
		t.Fatalf("floor %d after 20 MB of events with a 2 MB cap", res.Floor)
	}
	used, _ := s.db.EstimateDiskUsage(histKey(nil, res.Floor, 0), []byte{nsHist + 1})
	t.Logf("floor %d, history files %d bytes", res.Floor, used)
}
