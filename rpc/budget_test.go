package rpc

import (
	"context"
	"testing"
	"time"
)

func TestByteBudget(t *testing.T) {
	ctx := context.Background()
	b := newByteBudget(10)

	if n, err := b.acquire(ctx, 6); n != 6 || err != nil {
		t.Fatalf("acquire 6 of 10 = %d, %v", n, err)
	}
	// 5 does not fit beside 6: it waits, and a later 1 that would fit
	// waits behind it (first come, first served).
	got5, got1 := make(chan int64), make(chan int64)
	go func() { n, _ := b.acquire(ctx, 5); got5 <- n }()
	waitWaiters(t, b, 1)
	go func() { n, _ := b.acquire(ctx, 1); got1 <- n }()
	waitWaiters(t, b, 2)
	select {
	case <-got5:
		t.Fatal("5 bytes granted while 6 of 10 were held")
	case <-got1:
		t.Fatal("1 byte overtook the 5 waiting before it")
	case <-time.After(20 * time.Millisecond):
	}
	b.release(6)
	if n := <-got5; n != 5 {
		t.Fatalf("granted %d, want 5", n)
	}
	if n := <-got1; n != 1 {
		t.Fatalf("granted %d, want 1", n)
	}

	// More than the whole budget takes all of it, once everything is back.
	b.release(5)
	b.release(1)
	if n, err := b.acquire(ctx, 25); n != 10 || err != nil {
		t.Fatalf("acquire 25 of 10 = %d, %v; want all 10", n, err)
	}

	// A canceled wait takes nothing and unblocks those behind it.
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error)
	go func() { _, err := b.acquire(cctx, 10); errc <- err }()
	waitWaiters(t, b, 1)
	go func() { n, _ := b.acquire(ctx, 0); got1 <- n }()
	waitWaiters(t, b, 2)
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("canceled acquire returned no error")
	}
	if n := <-got1; n != 0 {
		t.Fatalf("acquire 0 = %d", n)
	}
	b.release(10)
	if b.free != 10 || len(b.waiters) != 0 {
		t.Fatalf("free %d with %d waiters after everything was released; want 10 and none", b.free, len(b.waiters))
	}
	defer func() {
		if recover() == nil {
			t.Fatal("releasing more than was acquired did not panic")
		}
	}()
	b.release(1)
}

func waitWaiters(t *testing.T, b *byteBudget, n int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		b.mu.Lock()
		got := len(b.waiters)
		b.mu.Unlock()
		if got == n {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("never saw %d waiters", n)
}
