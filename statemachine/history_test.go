package statemachine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
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

// A snapshot carries the newest whole revisions of the history whose
// events fit in Config.SnapshotHistoryBytes, and a floor where they start:
// the receiver serves every revision from there, and names it below.
func TestSnapshotHistoryCap(t *testing.T) {
	src, _ := openSM(t, vfs.NewMem(), "/src")
	value := strings.Repeat("v", 100)
	for i := uint64(1); i <= 20; i++ {
		mustUpdate(t, src, entry(i, putCmd(fmt.Sprint("k", i), value)))
	}
	two := Command{Ops: []Op{{Type: OpPut, Key: []byte("a"), Value: []byte(value)}, {Type: OpPut, Key: []byte("b"), Value: []byte(value)}}}
	mustUpdate(t, src, entry(21, two)) // the newest revision holds two events

	sizes := map[uint64]int64{} // revision → bytes of its events' keys and values
	it, err := src.db.NewIter(&pebble.IterOptions{LowerBound: []byte{nsHist}, UpperBound: []byte{nsHist + 1}})
	if err != nil {
		t.Fatal(err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		sizes[binary.BigEndian.Uint64(it.Key()[1:9])] += int64(len(it.Key()) + len(it.Value()))
	}
	_ = it.Close()
	tail := func(from uint64) (n int64) {
		for r, size := range sizes {
			if r >= from {
				n += size
			}
		}
		return n
	}
	for _, tc := range []struct {
		name  string
		limit int64
		floor uint64
	}{
		{"no cap", -1, 1},
		{"all of it fits", tail(1), 1},
		{"exactly the newest 5 revisions", tail(17), 17},
		{"one byte short of 5", tail(17) - 1, 18},
		{"less than the newest revision", sizes[21] - 1, 22},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src.cfg.SnapshotHistoryBytes = tc.limit
			snap := saveSnapshot(t, src)
			dst, _ := openSM(t, vfs.NewMem(), "/dst")
			if err := dst.RecoverFromSnapshot(bytes.NewReader(snap), nil); err != nil {
				t.Fatal(err)
			}
			if tc.floor > 1 {
				_, err := dst.Lookup(HistoryQuery{From: tc.floor - 1, Key: []byte("a"), End: []byte{0}})
				var ce *CompactedError
				if !errors.As(err, &ce) || ce.Floor != tc.floor {
					t.Fatalf("from %d: %v, want compacted with floor %d", tc.floor-1, err, tc.floor)
				}
			}
			res := history(t, dst, HistoryQuery{From: tc.floor, Key: []byte("a"), End: []byte{0}})
			var want int
			for r := tc.floor; r <= 21; r++ {
				want += map[bool]int{true: 2, false: 1}[r == 21]
			}
			if len(res.Events) != want || res.Floor != tc.floor || (want > 0 && res.Events[0].Revision != tc.floor) {
				t.Fatalf("from %d: %d events (%q), floor %d; want %d events from %d", tc.floor, len(res.Events), describe(res.Events), res.Floor, want, tc.floor)
			}
			mustUpdate(t, dst, entry(22, putCmd("k1", "new"))) // the receiver goes on from its floor
			if got := describe(history(t, dst, HistoryQuery{From: 22, Key: []byte("k1")}).Events); got != "put k1=new@22 " {
				t.Fatalf("after the snapshot: %q", got)
			}
		})
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

// readPages reads q page by page until a read answers More false, and
// fails if a read does not advance (a watcher would spin on it) or
// splits a revision.
func readPages(t *testing.T, s *StateMachine, q HistoryQuery) (events []Event, reads int) {
	t.Helper()
	for {
		reads++
		if reads > 10_000 {
			t.Fatalf("%+v: still More after 10,000 reads", q)
		}
		res := history(t, s, q)
		if res.Next <= q.From {
			t.Fatalf("%+v: read from %d answered next %d more %v: no progress", q, q.From, res.Next, res.More)
		}
		for _, e := range res.Events {
			if e.Revision < q.From || e.Revision >= res.Next {
				t.Fatalf("%+v: event at %d outside the page [%d, %d)", q, e.Revision, q.From, res.Next)
			}
		}
		events = append(events, res.Events...)
		if !res.More {
			return events, reads
		}
		q.From = res.Next
	}
}

// MaxScan stops a read at a revision boundary, after at least one whole
// revision: a read always advances, however many events one entry holds
// and however few of them match.
func TestHistoryMaxScan(t *testing.T) {
	s, _ := openSM(t, vfs.NewMem(), "/sm")
	var big []Command
	for i := range 300 {
		big = append(big, putCmd(fmt.Sprint("x", i), "v"))
	}
	big = append(big, putCmd("k", "big"))
	mustUpdate(t, s,
		entry(1, putCmd("a", "1"), putCmd("b", "1"), putCmd("c", "1"), putCmd("k", "1")), // the audit's case
		entry(2, big...), // many events, the match last
		entry(3, putCmd("other", "1")),
		entry(4, putCmd("other", "2")),
		entry(5, putCmd("other", "3")),
		entry(6, putCmd("k", "2"), putCmd("k", "3"), putCmd("k", "4")), // a revision longer than MaxScan, all matching
		entry(7, putCmd("other", "4")),
	)
	for _, tc := range []struct {
		name string
		q    HistoryQuery
		want string
	}{
		{"key", HistoryQuery{Key: []byte("k")}, "put k=1@1+ put k=big@2 put k=2@6 put k=3@6 put k=4@6 "},
		{"prefix", HistoryQuery{Key: []byte("o"), End: PrefixEnd([]byte("o"))}, "put other=1@3+ put other=2@4 put other=3@5 put other=4@7 "},
		{"no match", HistoryQuery{Key: []byte("zz")}, ""},
	} {
		for _, scan := range []int{1, 2, 3, 5, 1000} {
			q := tc.q
			q.From, q.MaxScan = 1, scan
			events, reads := readPages(t, s, q)
			if got := describe(events); got != tc.want {
				t.Errorf("%s, max scan %d: got %q, want %q", tc.name, scan, got, tc.want)
			}
			// At most one read per revision (7), and one for a large cap.
			if reads > 7 || scan == 1000 && reads != 1 {
				t.Errorf("%s, max scan %d: %d reads", tc.name, scan, reads)
			}
		}
	}
	// The first read of the audit's case: revision 1 whole, then stop.
	res := history(t, s, HistoryQuery{From: 1, Key: []byte("k"), MaxScan: 2})
	if got := describe(res.Events); got != "put k=1@1+ " || res.Next != 2 || !res.More {
		t.Fatalf("max scan 2 from 1: %q next %d more %v", got, res.Next, res.More)
	}
}

// Read page by page under random bounds, the history is the same as in
// one read.
func TestHistoryPagesRandom(t *testing.T) {
	s, _ := openSM(t, vfs.NewMem(), "/sm")
	rng := rand.New(rand.NewPCG(3, 4))
	keys := []string{"a", "ab", "abc", "b", "c"}
	for i := uint64(1); i <= 300; i++ {
		var cmds []Command
		for range rng.IntN(3) * rng.IntN(12) { // a third of the entries empty
			k := keys[rng.IntN(len(keys))]
			if rng.IntN(4) == 0 {
				cmds = append(cmds, delCmd(k))
			} else {
				cmds = append(cmds, putCmd(k, fmt.Sprint(i)))
			}
		}
		mustUpdate(t, s, entry(i, cmds...))
	}
	for _, q := range []HistoryQuery{
		{Key: []byte("abc")},
		{Key: []byte("a"), End: PrefixEnd([]byte("a"))},
		{Key: []byte("b"), End: []byte{0}},
		{Key: []byte("zz"), End: []byte{0}},
	} {
		q.From = 1
		want := describe(history(t, s, q).Events)
		for range 20 {
			q.Limit, q.MaxBytes, q.MaxScan = rng.IntN(5), rng.IntN(12), rng.IntN(8)
			if got, _ := readPages(t, s, q); describe(got) != want {
				t.Fatalf("%+v: paged %q, whole %q", q, describe(got), want)
			}
		}
	}
}

// MaxBytes ends a page at the first revision boundary at or past it.
func TestHistoryMaxBytes(t *testing.T) {
	s, _ := openSM(t, vfs.NewMem(), "/sm")
	v := string(bytes.Repeat([]byte("v"), 99)) // an event of key k: 100 bytes
	mustUpdate(t, s,
		entry(1, putCmd("k", v)),
		entry(2, putCmd("k", v), putCmd("k", v), putCmd("k", v)),
		entry(3, putCmd("k", v)),
		entry(4, putCmd("k", v)),
	)
	for _, tc := range []struct {
		from     uint64
		maxBytes int
		events   int
		next     uint64
	}{
		{1, 1, 1, 2},   // at least one revision
		{1, 100, 1, 2}, // reached exactly
		{1, 101, 4, 3}, // revision 2 is finished
		{2, 250, 3, 3}, // one revision past the bound
		{3, 201, 2, 5}, // all there is
		{3, 1 << 20, 2, 5},
	} {
		res := history(t, s, HistoryQuery{From: tc.from, Key: []byte("k"), MaxBytes: tc.maxBytes})
		if len(res.Events) != tc.events || res.Next != tc.next || res.More != (tc.next < 5) {
			t.Errorf("from %d, max bytes %d: %d events next %d more %v; want %d events next %d",
				tc.from, tc.maxBytes, len(res.Events), res.Next, res.More, tc.events, tc.next)
		}
	}
}

// openKeeping opens the state machine in dir keeping keep revisions of
// history (-1: none).
func openKeeping(t *testing.T, fs vfs.FS, dir string, keep int) *StateMachine {
	t.Helper()
	s, err := Open(dir, Config{FS: fs, Logger: testLogger(t), HistoryRevisions: keep})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(nil); err != nil {
		t.Fatal(err)
	}
	return s
}

func storedEvents(t *testing.T, s *StateMachine) int {
	t.Helper()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{nsHist}, UpperBound: []byte{nsHist + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

// A node that ran without history and has it again serves no revision
// applied while it was off: a watch from before them is compacted, not
// answered with a gap. Nor does a snapshot it sent meanwhile carry the
// old history.
func TestHistoryOffThenOn(t *testing.T) {
	fs := vfs.NewMem()
	on := openKeeping(t, fs, "/sm", 0)
	mustUpdate(t, on, entry(1, putCmd("k", "1")), entry(2, putCmd("k", "2")))
	_ = on.Close()

	off := openKeeping(t, fs, "/sm", -1)
	mustUpdate(t, off, entry(3, putCmd("k", "3")))
	mustUpdate(t, off, entry(4, putCmd("k", "4")))
	if n := storedEvents(t, off); n != 0 {
		t.Errorf("%d events stored with the history off", n)
	}
	p, err := off.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := off.SaveSnapshot(p, &buf, nil); err != nil {
		t.Fatal(err)
	}
	_ = off.Close()
	dst, _ := openSM(t, vfs.NewMem(), "/dst")
	if err := dst.RecoverFromSnapshot(&buf, nil); err != nil {
		t.Fatal(err)
	}

	again := openKeeping(t, fs, "/sm", 0)
	defer again.Close()
	mustUpdate(t, again, entry(5, putCmd("k", "5")))
	mustUpdate(t, dst, entry(5, putCmd("k", "5")))
	for name, s := range map[string]*StateMachine{"restarted": again, "from the snapshot": dst} {
		_, err := s.Lookup(HistoryQuery{From: 1, Key: []byte("k")})
		var ce *CompactedError
		if !errors.As(err, &ce) || ce.Floor != 5 {
			res := history(t, s, HistoryQuery{From: 1, Key: []byte("k")})
			t.Errorf("%s: from 1: err %v, events %q; want compacted, floor 5", name, err, describe(res.Events))
			continue
		}
		if got := describe(history(t, s, HistoryQuery{From: 5, Key: []byte("k")}).Events); got != "put k=5@5 " {
			t.Errorf("%s: from 5: %q", name, got)
		}
	}
}

// A node without history drops what a snapshot brought at its next Update.
func TestHistoryOffDropsSnapshotHistory(t *testing.T) {
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
	dst := openKeeping(t, vfs.NewMem(), "/dst", -1)
	defer dst.Close()
	mustUpdate(t, dst, entry(1, putCmd("b", "1"))) // its own store's first Update
	if err := dst.RecoverFromSnapshot(&buf, nil); err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, dst, entry(3, putCmd("a", "3")))
	_, ok, err := getFloor(dst.db)
	if n := storedEvents(t, dst); n != 0 || ok || err != nil {
		t.Fatalf("after an Update without history: %d events, floor stored %v (%v)", n, ok, err)
	}
}
