package kvtest_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/kvd-project/kvd/client"
	"github.com/kvd-project/kvd/kvtest"
	"github.com/kvd-project/kvd/statemachine"
)

// Puts of 16-byte keys (100k keyspace) and 128-byte values into a 3-node
// in-process cluster (FastRaft timing, fsync on), with 1, 16 and 64 calls in
// flight. Everything shares this process's cores, so the figures are a
// floor for a real cluster, useful to compare changes (benchstat):
//
//	go test -run '^$' -bench 3Node -benchtime 3s ./kvtest/

const (
	benchKeyspace  = 100_000
	benchValueSize = 128
)

var inflights = []int{1, 16, 64}

// BenchmarkPropose3Node proposes through node.Propose on the leader: the
// Raft and state machine path without RPC.
func BenchmarkPropose3Node(b *testing.B) {
	c := kvtest.NewCluster(b, 3)
	n := c.Server(c.Leader()).Node()
	value := make([]byte, benchValueSize)
	var seq atomic.Uint64
	for _, inflight := range inflights {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			runInflight(b, inflight, func(key []byte) error {
				cmd := statemachine.Command{Ops: []statemachine.Op{{Type: statemachine.OpPut, Key: key, Value: value}}}
				res, err := n.Propose(context.Background(), []statemachine.Command{cmd})
				if err == nil && (len(res) != 1 || !res[0].Succeeded) {
					err = fmt.Errorf("propose: results %+v", res)
				}
				return err
			}, &seq)
		})
	}
}

// BenchmarkPut3NodeConnect puts through the Connect API of the leader with
// the Go client (Connect protocol, HTTP/1.1 keep-alive): the RPC layer
// included.
func BenchmarkPut3NodeConnect(b *testing.B) {
	c := kvtest.NewCluster(b, 3)
	cl, err := client.New(client.Config{Endpoints: []string{c.Endpoint(c.Leader())}, Unary: true})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	value := make([]byte, benchValueSize)
	var seq atomic.Uint64
	for _, inflight := range inflights {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			runInflight(b, inflight, func(key []byte) error {
				_, err := cl.Put(context.Background(), key, value)
				return err
			}, &seq)
		})
	}
}

// runInflight calls put b.N times with inflight calls at once and reports
// ops/s.
func runInflight(b *testing.B, inflight int, put func(key []byte) error, seq *atomic.Uint64) {
	b.ReportAllocs()
	if inflight == 1 {
		key := make([]byte, 16)
		b.ResetTimer()
		for range b.N {
			benchKey(key, seq.Add(1))
			if err := put(key); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		// RunParallel starts parallelism × GOMAXPROCS goroutines.
		b.SetParallelism((inflight + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			key := make([]byte, 16)
			for pb.Next() {
				benchKey(key, seq.Add(1))
				if err := put(key); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// benchKey writes "k" and i modulo the keyspace, zero-padded, into key.
func benchKey(key []byte, i uint64) {
	i %= benchKeyspace
	key[0] = 'k'
	for j := len(key) - 1; j >= 1; j-- {
		key[j] = byte('0' + i%10)
		i /= 10
	}
}
