package statemachine

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

var flagBenchCacheMiB = flag.Int("bench-cache-mib", 0, "BenchmarkUpdate: Pebble block cache in MiB (0: default)")

const (
	benchKeySize   = 16
	benchValueSize = 128
)

// benchKey fills a 16-byte key for i, spread over the keyspace.
func benchKey(dst []byte, i uint64) []byte {
	dst = binary.BigEndian.AppendUint64(dst[:0], i*0x9e3779b97f4a7c15)
	return binary.BigEndian.AppendUint64(dst, i)
}

// benchCommands returns n plain puts of 16-byte keys and 128-byte values.
func benchCommands(n int) []Command {
	value := bytes.Repeat([]byte{'v'}, benchValueSize)
	cmds := make([]Command, n)
	for i := range cmds {
		cmds[i] = Command{Ops: []Op{{Type: OpPut, Key: benchKey(nil, uint64(i)), Value: value}}}
	}
	return cmds
}

func BenchmarkEncodeCommands(b *testing.B) {
	cmds := benchCommands(64)
	buf := make([]byte, 0, commandsSize(cmds))
	b.SetBytes(int64(cap(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = EncodeCommands(buf[:0], cmds)
	}
}

func BenchmarkDecodeCommands(b *testing.B) {
	buf := EncodeCommands(nil, benchCommands(64))
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCommands(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdate applies entries of one 16-byte-key, 128-byte-value put each,
// `batch` entries per Update call, on a real disk. One op is one entry. Keys
// are uniform over 2^20, so puts both create and overwrite, and every put
// reads the key's revisions first: with the default 8 MiB block cache the
// store outgrows the cache and those reads dominate; compare with
// "go test -run x -bench Update ./statemachine/ -args -bench-cache-mib 64".
func BenchmarkUpdate(b *testing.B) {
	for _, batch := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, err := Open(b.TempDir(), Config{CacheSize: int64(*flagBenchCacheMiB) << 20})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Open(nil); err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			value := bytes.Repeat([]byte{'v'}, benchValueSize)
			rng := rand.New(rand.NewPCG(1, uint64(batch)))
			ents := make([]sm.Entry, batch)
			var key [benchKeySize]byte
			index := uint64(0)
			b.SetBytes(benchKeySize + benchValueSize)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for done := 0; done < b.N; done += batch {
				n := min(batch, b.N-done)
				for i := range n {
					index++
					k := benchKey(key[:0], rng.Uint64()%(1<<20)) // ~1M distinct keys: puts create and overwrite
					ents[i] = sm.Entry{Index: index, Cmd: EncodeCommands(ents[i].Cmd[:0], []Command{{Ops: []Op{{Type: OpPut, Key: k, Value: value}}}})}
				}
				if _, err := s.Update(ents[:n]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
		})
	}
}

// BenchmarkSnapshotRoundTrip saves a ~100 MB store (200k keys, 512-byte
// values) and recovers it into another state machine on disk.
func BenchmarkSnapshotRoundTrip(b *testing.B) {
	const keys, valueSize = 200_000, 512
	src := filledStore(b, keys, valueSize)
	dst, _ := openSM(b, vfs.Default, b.TempDir())
	b.ResetTimer()
	for b.Loop() {
		p, err := src.PrepareSnapshot()
		if err != nil {
			b.Fatal(err)
		}
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := src.SaveSnapshot(p, pw, nil)
			pw.CloseWithError(err)
			done <- err
		}()
		if err := dst.RecoverFromSnapshot(pr, nil); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(keys * (valueSize + 20)))
	}
}

// BenchmarkUpdateOverwrite applies puts that overwrite a working set of keys
// (all written once before the timer starts), 64 entries of one put each per
// Update, with the header cache (headercache.go) and without it. One op is
// one entry.
func BenchmarkUpdateOverwrite(b *testing.B) {
	for _, keys := range []int{10_000, 100_000} {
		for _, cache := range []bool{true, false} {
			b.Run(fmt.Sprintf("keys=%d/cache=%v", keys, cache), func(b *testing.B) {
				s, err := Open(b.TempDir(), Config{CacheSize: int64(*flagBenchCacheMiB) << 20})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Open(nil); err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				if !cache {
					s.apply.cache = newHeaderCache(0)
				}
				benchOverwrite(b, s, keys)
			})
		}
	}
}

func benchOverwrite(b *testing.B, s *StateMachine, keys int) {
	const batch = 64
	value := bytes.Repeat([]byte{'v'}, benchValueSize)
	ents := make([]sm.Entry, batch)
	var key [benchKeySize]byte
	index := uint64(0)
	update := func(n int, next func() uint64) {
		for i := range n {
			index++
			k := benchKey(key[:0], next())
			ents[i] = sm.Entry{Index: index, Cmd: EncodeCommands(ents[i].Cmd[:0], []Command{{Ops: []Op{{Type: OpPut, Key: k, Value: value}}}})}
		}
		if _, err := s.Update(ents[:n]); err != nil {
			b.Fatal(err)
		}
	}
	seq := uint64(0)
	for done := 0; done < keys; done += batch {
		update(min(batch, keys-done), func() uint64 { seq++; return seq - 1 })
	}
	rng := rand.New(rand.NewPCG(1, uint64(keys)))
	b.SetBytes(benchKeySize + benchValueSize)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		update(min(batch, b.N-done), func() uint64 { return rng.Uint64() % uint64(keys) })
	}
}

// BenchmarkRecover recovers a ~100 MB store (100k keys, 1 KiB values, as
// bench/join.sh writes) from a snapshot held in memory: the joiner's side
// of a join, without the transfer.
func BenchmarkRecover(b *testing.B) {
	const keys, valueSize = 100_000, 1024
	src := filledStore(b, keys, valueSize)
	p, err := src.PrepareSnapshot()
	if err != nil {
		b.Fatal(err)
	}
	var snap bytes.Buffer
	if err := src.SaveSnapshot(p, &snap, nil); err != nil {
		b.Fatal(err)
	}
	dst, _ := openSM(b, vfs.Default, b.TempDir())
	b.SetBytes(int64(snap.Len()))
	for b.Loop() {
		if err := dst.RecoverFromSnapshot(bytes.NewReader(snap.Bytes()), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSaveSnapshot streams a ~100 MB store (100k keys, 1 KiB values,
// as bench/join.sh writes) to io.Discard: the sender's side of a join,
// without the transfer.
func BenchmarkSaveSnapshot(b *testing.B) {
	const keys, valueSize = 100_000, 1024
	src := filledStore(b, keys, valueSize)
	b.SetBytes(keys * (valueSize + benchKeySize))
	for b.Loop() {
		p, err := src.PrepareSnapshot()
		if err != nil {
			b.Fatal(err)
		}
		if err := src.SaveSnapshot(p, io.Discard, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// filledStore is a state machine on disk holding keys keys of valueSize
// bytes, written 512 entries of one put per Update.
func filledStore(b *testing.B, keys uint64, valueSize int) *StateMachine {
	src, _ := openSM(b, vfs.Default, b.TempDir())
	value := bytes.Repeat([]byte{'x'}, valueSize)
	var index uint64
	for index < keys {
		ents := make([]sm.Entry, 0, 512)
		for range 512 {
			index++
			ents = append(ents, entry(index, Command{Ops: []Op{{Type: OpPut, Key: benchKey(nil, index), Value: value}}}))
		}
		mustUpdate(b, src, ents...)
	}
	return src
}
