package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kvd-project/kvd/statemachine"
)

func putCmd(key string, size int) statemachine.Command {
	return statemachine.Command{Ops: []statemachine.Op{{Type: statemachine.OpPut, Key: []byte(key), Value: make([]byte, size)}}}
}

func queued(b *batcher, cmds ...statemachine.Command) []*write {
	ws := make([]*write, len(cmds))
	for i, c := range cmds {
		ws[i] = &write{ctx: context.Background(), cmd: c, done: make(chan struct{})}
	}
	b.queue = append(b.queue, ws...)
	return ws
}

func keysOf(batch []*write) []string {
	var out []string
	for _, w := range batch {
		out = append(out, string(w.cmd.Ops[0].Key))
	}
	return out
}

func TestTakeSplitsAtARepeatedKey(t *testing.T) {
	var b batcher
	keys := map[string]struct{}{}
	queued(&b, putCmd("a", 1), putCmd("b", 1), putCmd("a", 1), putCmd("c", 1))
	if got := fmt.Sprint(keysOf(b.take(keys))); got != "[a b]" {
		t.Fatalf("first batch %s, want [a b]: the second write of a must wait for the next entry", got)
	}
	if got := fmt.Sprint(keysOf(b.take(keys))); got != "[a c]" {
		t.Fatalf("second batch %s, want [a c]", got)
	}
	if got := b.take(keys); len(got) != 0 || len(b.queue) != 0 {
		t.Fatalf("queue not drained: batch %d, queue %d", len(got), len(b.queue))
	}
}

func TestTakeRespectsLimits(t *testing.T) {
	var b batcher
	keys := map[string]struct{}{}
	var cmds []statemachine.Command
	for i := 0; i < batchMaxCmds+3; i++ {
		cmds = append(cmds, putCmd(fmt.Sprint(i), 1))
	}
	queued(&b, cmds...)
	if n := len(b.take(keys)); n != batchMaxCmds {
		t.Fatalf("batch of %d commands, want the limit %d", n, batchMaxCmds)
	}
	if n := len(b.take(keys)); n != 3 {
		t.Fatalf("rest batch %d, want 3", n)
	}

	// Bytes: two half-limit values do not fit together; one oversized
	// command still goes, alone.
	queued(&b, putCmd("x", batchMaxBytes/2), putCmd("y", batchMaxBytes/2), putCmd("huge", 2*batchMaxBytes), putCmd("z", 1))
	for _, want := range []string{"[x]", "[y]", "[huge]", "[z]"} {
		if got := fmt.Sprint(keysOf(b.take(keys))); got != want {
			t.Fatalf("batch %s, want %s", got, want)
		}
	}
}

func TestTakeAnswersAbandonedWrites(t *testing.T) {
	var b batcher
	ctx, cancel := context.WithCancel(context.Background())
	ws := queued(&b, putCmd("a", 1))
	ws[0].ctx = ctx
	cancel()
	queued(&b, putCmd("b", 1))
	if got := fmt.Sprint(keysOf(b.take(map[string]struct{}{}))); got != "[b]" {
		t.Fatalf("batch %s, want [b]", got)
	}
	select {
	case <-ws[0].done:
		if ws[0].err != context.Canceled {
			t.Fatalf("abandoned write: %v, want context.Canceled", ws[0].err)
		}
	default:
		t.Fatal("abandoned write not answered")
	}
}

// Under concurrency the batcher proposes at most batchMaxInflight entries
// at once, every write gets the result of its own command, and writes
// queued behind a busy proposer share entries.
func TestBatcherCoalesces(t *testing.T) {
	var (
		mu        sync.Mutex
		inflight  int
		peak      int
		proposals int
		release   = make(chan struct{})
	)
	b := &batcher{ctx: context.Background(), propose: func(_ context.Context, cmds []statemachine.Command) ([]statemachine.Result, error) {
		mu.Lock()
		inflight++
		proposals++
		peak = max(peak, inflight)
		mu.Unlock()
		<-release
		res := make([]statemachine.Result, len(cmds))
		for i, c := range cmds {
			res[i] = statemachine.Result{Succeeded: true, Revision: uint64(len(c.Ops[0].Value))}
		}
		mu.Lock()
		inflight--
		mu.Unlock()
		return res, nil
	}}
	const n = 200
	ws := make([]*write, n)
	for i := range ws {
		ws[i] = &write{ctx: context.Background(), cmd: putCmd(fmt.Sprint(i), i), done: make(chan struct{})}
		b.submit([]*write{ws[i]})
	}
	close(release)
	for i, w := range ws {
		<-w.done
		if w.err != nil || w.res.Revision != uint64(i) {
			t.Fatalf("write %d: result %+v, %v; want its own result", i, w.res, w.err)
		}
	}
	if peak > batchMaxInflight {
		t.Fatalf("%d proposals in flight, limit %d", peak, batchMaxInflight)
	}
	if proposals >= n/2 {
		t.Fatalf("%d proposals for %d writes: not coalesced", proposals, n)
	}
}

// stop waits for the proposers it started, cancels what they propose, and
// fails later writes at once.
func TestBatcherStopWaitsForItsProposers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	running.Add(1)
	b := &batcher{ctx: ctx, propose: func(ctx context.Context, _ []statemachine.Command) ([]statemachine.Result, error) {
		running.Done()
		<-ctx.Done() // a proposal that only ends when the node stops
		return nil, ctx.Err()
	}}
	w := &write{ctx: context.Background(), cmd: putCmd("a", 1), done: make(chan struct{})}
	b.submit([]*write{w})
	running.Wait()
	stopped := make(chan struct{})
	go func() { b.stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("stop returned while a proposer was still proposing")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not return after the node's context ended")
	}
	<-w.done
	if !errors.Is(w.err, context.Canceled) {
		t.Fatalf("in-flight write: %v, want context.Canceled", w.err)
	}
	late := &write{ctx: context.Background(), cmd: putCmd("b", 1), done: make(chan struct{})}
	b.submit([]*write{late})
	<-late.done
	if !errors.Is(late.err, ErrStopped) {
		t.Fatalf("write after stop: %v, want ErrStopped", late.err)
	}
}
