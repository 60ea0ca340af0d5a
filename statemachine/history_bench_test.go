package statemachine

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	sm "github.com/lni/dragonboat/v4/statemachine"
)

// What the watch history costs. BenchmarkUpdateHistory applies the same
// entries as BenchmarkUpdate (one put of a 16-byte key and a 128-byte
// random value each, keys uniform over 2^20) with the history kept
// (the default, 100,000 revisions) and without (-1):
//
//	go test -run '^$' -bench UpdateHistory -benchtime 200000x -count 3 ./statemachine/
//
// BenchmarkHistoryBytesPerEvent writes 100,000 such puts, flushes and
// compacts, and reports Pebble's disk usage per put with and without the
// history ("disk-B/put"; the difference is what an event costs on disk)
// and the history's own key + value bytes per event ("logical-B/event"):
//
//	go test -run '^$' -bench HistoryBytesPerEvent -benchtime 1x ./statemachine/

// historyModes are the two settings compared.
var historyModes = []struct {
	name string
	keep int
}{{"history=on", DefaultHistoryRevisions}, {"history=off", -1}}

// benchEntries fills ents with one put each at the next indexes: keys
// uniform over 2^20, random 128-byte values.
func benchEntries(ents []sm.Entry, index *uint64, rng *rand.Rand, value []byte) {
	var key [benchKeySize]byte
	for i := range ents {
		*index++
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		k := benchKey(key[:0], rng.Uint64()%(1<<20))
		ents[i] = sm.Entry{Index: *index, Cmd: EncodeCommands(ents[i].Cmd[:0], []Command{{Ops: []Op{{Type: OpPut, Key: k, Value: value}}}})}
	}
}

func openBenchSM(b *testing.B, keep int) *StateMachine {
	b.Helper()
	s, err := Open(b.TempDir(), Config{HistoryRevisions: keep, CacheSize: int64(*flagBenchCacheMiB) << 20})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Open(nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func BenchmarkUpdateHistory(b *testing.B) {
	for _, batch := range []int{1, 64} {
		for _, mode := range historyModes {
			b.Run(fmt.Sprintf("batch=%d/%s", batch, mode.name), func(b *testing.B) {
				s := openBenchSM(b, mode.keep)
				rng := rand.New(rand.NewPCG(1, uint64(batch)))
				value := make([]byte, benchValueSize)
				ents := make([]sm.Entry, batch)
				index := uint64(0)
				b.SetBytes(benchKeySize + benchValueSize)
				b.ReportAllocs()
				var spent time.Duration
				for done := 0; done < b.N; done += batch {
					n := min(batch, b.N-done)
					b.StopTimer()
					benchEntries(ents[:n], &index, rng, value)
					b.StartTimer()
					began := time.Now()
					if _, err := s.Update(ents[:n]); err != nil {
						b.Fatal(err)
					}
					spent += time.Since(began)
				}
				b.ReportMetric(float64(b.N)/spent.Seconds(), "entries/s")
			})
		}
	}
}

func BenchmarkHistoryBytesPerEvent(b *testing.B) {
	const puts, batch = 100_000, 64
	for _, mode := range historyModes {
		b.Run(mode.name, func(b *testing.B) {
			for b.Loop() {
				s := openBenchSM(b, mode.keep)
				rng := rand.New(rand.NewPCG(1, 2))
				value := make([]byte, benchValueSize)
				ents := make([]sm.Entry, batch)
				index := uint64(0)
				for done := 0; done < puts; done += batch {
					n := min(batch, puts-done)
					benchEntries(ents[:n], &index, rng, value)
					if _, err := s.Update(ents[:n]); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(diskUsage(b, s))/puts, "disk-B/put")
				if mode.keep > 0 {
					b.ReportMetric(float64(historyBytes(b, s))/puts, "logical-B/event")
				}
			}
		})
	}
}

// diskUsage flushes and compacts the store and returns Pebble's disk use.
func diskUsage(b *testing.B, s *StateMachine) uint64 {
	b.Helper()
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := s.db.Compact(b.Context(), []byte{0}, []byte{0xff}, true); err != nil {
		b.Fatal(err)
	}
	return s.db.Metrics().DiskSpaceUsage()
}

// historyBytes sums the keys and values of the history's records.
func historyBytes(b *testing.B, s *StateMachine) int {
	b.Helper()
	it, err := s.db.NewIter(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer it.Close()
	n := 0
	for valid := it.SeekGE([]byte{nsHist}); valid && it.Key()[0] == nsHist; valid = it.Next() {
		n += len(it.Key()) + len(it.Value())
	}
	return n
}
