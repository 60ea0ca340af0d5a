package rpc

import (
	"context"
	"sync"
)

// byteBudget is a counting semaphore of bytes, first come first served: a
// large request is not overtaken by smaller ones that arrive after it. A
// request larger than the whole budget takes all of it.
type byteBudget struct {
	mu      sync.Mutex
	size    int64
	free    int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed when the bytes are granted
}

func newByteBudget(size int64) *byteBudget {
	return &byteBudget{size: size, free: size}
}

// acquire waits until n bytes (at most the budget's size) are free and takes
// them. It returns what it took, to be given back with release, or ctx's
// error having taken nothing.
func (b *byteBudget) acquire(ctx context.Context, n int64) (int64, error) {
	n = max(0, min(n, b.size))
	b.mu.Lock()
	if len(b.waiters) == 0 && b.free >= n {
		b.free -= n
		b.mu.Unlock()
		return n, nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return n, nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-w.ready: // granted meanwhile: give it back
			b.free += n
			b.grant()
		default:
			for i, x := range b.waiters {
				if x == w {
					b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
					break
				}
			}
			b.grant() // w may have held up smaller requests behind it
		}
		return 0, ctx.Err()
	}
}

// release gives back n bytes taken by acquire.
func (b *byteBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free += n
	if b.free > b.size {
		panic("rpc: byte budget released more than was acquired")
	}
	b.grant()
}

// grant hands free bytes to the waiters in order, while the first fits.
func (b *byteBudget) grant() {
	for len(b.waiters) > 0 && b.free >= b.waiters[0].n {
		w := b.waiters[0]
		b.free -= w.n
		b.waiters = b.waiters[1:]
		close(w.ready)
	}
}
