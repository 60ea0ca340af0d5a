package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

func newStreamClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Concurrent calls share one stream; each gets its own answer, and the
// server's per-call errors come back as they would over unary calls.
func TestStreamSharesOneStream(t *testing.T) {
	n := newFakeNode(t, 1)
	c := newStreamClient(t, Config{Endpoints: []string{n.addr}, BackoffBase: time.Millisecond})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				key := []byte(fmt.Sprintf("k%d-%d", w, i))
				if _, err := c.Put(ctx, key, []byte("v")); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if s, p := n.Calls("Stream"), n.Calls("Put"); s != 1 || p != 80 {
		t.Fatalf("%d streams and %d puts, want 1 and 80", s, p)
	}

	r, err := c.Put(ctx, []byte("cas"), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Put(ctx, []byte("cas"), []byte("2"), IfModRevision(r.Revision-1))
	if !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("stale CAS: %v, want ErrCompareFailed", err)
	}
	if cur, ok := CurrentModRevision(err); !ok || cur != r.Revision {
		t.Fatalf("current revision %d (%v), want %d", cur, ok, r.Revision)
	}
	if _, err := c.Get(ctx, []byte("missing")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}

	// A per-call Unavailable means not applied: the write is retried.
	var once sync.Once
	n.mu.Lock()
	n.fail = func(proc string) error {
		var err error
		if proc == "Put" {
			once.Do(func() { err = connect.NewError(connect.CodeUnavailable, errors.New("no leader")) })
		}
		return err
	}
	n.mu.Unlock()
	before := n.Calls("Put")
	if _, err := c.Put(ctx, []byte("retried"), []byte("v")); err != nil {
		t.Fatalf("put after one Unavailable: %v", err)
	}
	if got := n.Calls("Put") - before; got != 2 {
		t.Fatalf("%d put attempts, want 2", got)
	}
}

// A stream that breaks after the server received a write: the write's
// outcome is unknown and it is not sent again; a read is retried on the
// next endpoint.
func TestStreamBrokenAfterSend(t *testing.T) {
	a, b := newFakeNode(t, 1), newFakeNode(t, 2)
	a.mu.Lock()
	a.fail = func(proc string) error {
		if proc == "StreamMessage" {
			return connect.NewError(connect.CodeUnavailable, errors.New("shutting down"))
		}
		return nil
	}
	a.mu.Unlock()
	b.kvs["k"] = &kvdv1.KeyValue{Key: []byte("k"), Value: []byte("from b"), ModRevision: 3}
	c := newStreamClient(t, Config{Endpoints: []string{a.addr, b.addr}, BackoffBase: time.Millisecond})
	ctx := context.Background()

	_, err := c.Put(ctx, []byte("w"), []byte("v"))
	if err == nil || !OutcomeUnknown(err) {
		t.Fatalf("put on a stream that broke after receiving it: %v, want an unknown outcome", err)
	}
	if n := b.Calls("Put"); n != 0 {
		t.Fatalf("the write was sent again to the other node (%d puts there)", n)
	}
	kv, err := c.Get(ctx, []byte("k"))
	if err != nil || string(kv.Value) != "from b" {
		t.Fatalf("get: %v, %v; want the other node's value", kv, err)
	}
}

// A caller that gives up gets its context's error (for a write: outcome
// unknown); the stream stays usable for the next call.
func TestStreamCallerGivesUp(t *testing.T) {
	n := newFakeNode(t, 1)
	n.delay = time.Second
	c := newStreamClient(t, Config{Endpoints: []string{n.addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Put(ctx, []byte("slow"), []byte("v"))
	if !errors.Is(err, context.DeadlineExceeded) || !OutcomeUnknown(err) {
		t.Fatalf("put past its deadline: %v, want DeadlineExceeded with an unknown outcome", err)
	}
	n.mu.Lock()
	n.delay = 0
	n.mu.Unlock()
	if _, err := c.Put(context.Background(), []byte("fast"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if s := n.Calls("Stream"); s != 1 {
		t.Fatalf("%d streams, want the first one reused", s)
	}
}
