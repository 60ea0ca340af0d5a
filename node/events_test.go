package node

import (
	"testing"
	"time"
)

// Every waiter that took the channel before notify wakes; one that takes
// it after waits for the next notify.
func TestBroadcastWakesEveryWaiter(t *testing.T) {
	var b broadcast
	w1, w2 := b.wait(), b.wait()
	b.notify()
	for i, w := range []<-chan struct{}{w1, w2} {
		select {
		case <-w:
		case <-time.After(time.Second):
			t.Fatalf("waiter %d not woken", i+1)
		}
	}
	w3 := b.wait()
	select {
	case <-w3:
		t.Fatal("a waiter after the notify woke without a new one")
	default:
	}
	b.notify()
	b.notify() // with nobody waiting: no panic
	select {
	case <-w3:
	default:
		t.Fatal("second notify did not wake the new waiter")
	}
}
