package load

import (
	"context"
	"sync"
	"testing"
	"time"
)

// logSystem is an in-memory store with a change log: a put takes 1 ms,
// gets the next revision and is delivered to every watcher;
// the watchers whose index is in drop lose one event 200 ms after they
// started (inside the measured window).
type logSystem struct {
	mu   sync.Mutex
	rev  uint64
	subs []chan logEvent
	acks *Acks
	drop map[int]bool
}

type logEvent struct {
	rev uint64
	key []byte
}

func (s *logSystem) Put(_ context.Context, key, _ []byte) error {
	sent := time.Now()
	time.Sleep(time.Millisecond)
	s.mu.Lock()
	s.rev++
	rev := s.rev
	for _, c := range s.subs {
		c <- logEvent{rev, append([]byte(nil), key...)}
	}
	s.mu.Unlock()
	s.acks.Put(rev, key, sent)
	return nil
}

func (s *logSystem) Get(context.Context, []byte) (bool, error) { return true, nil }

func (s *logSystem) Watch(ctx context.Context, _ []byte, sink *WatchSink) error {
	s.mu.Lock()
	i := len(s.subs)
	c := make(chan logEvent, 1<<16)
	s.subs = append(s.subs, c)
	now, drop := s.rev, s.drop[i]
	s.mu.Unlock()
	sink.Progress(now)
	dropAt := time.Now().Add(200 * time.Millisecond)
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-c:
			if drop && time.Now().After(dropAt) {
				drop = false
			} else {
				sink.Event(e.rev, e.key)
			}
			sink.Progress(e.rev)
		}
	}
}

func runWatched(t *testing.T, sys *logSystem, watchers int) *Result {
	t.Helper()
	sys.acks = NewAcks()
	ws, err := StartWatchers(context.Background(), watchers, []WatchTarget{sys}, sys.acks, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	w := DefaultWorkload()
	w.Clients, w.Warmup, w.Duration = 2, 50*time.Millisecond, 300*time.Millisecond
	res, err := Run(context.Background(), w, []Target{sys}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Finish(res, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestWatchersMeasureEveryEvent(t *testing.T) {
	sys := &logSystem{}
	res := runWatched(t, sys, 3)
	if res.Watchers != 3 || res.WatchMissed != 0 {
		t.Fatalf("watchers %d, missed %d", res.Watchers, res.WatchMissed)
	}
	// Every watcher gets every put: about 3 events per put per second.
	if r := res.WatchEventsPerSec / res.OpsPerSec; r < 2.5 || r > 3.5 {
		t.Fatalf("%.0f events/s for %.0f puts/s with 3 watchers", res.WatchEventsPerSec, res.OpsPerSec)
	}
	// A put takes 1 ms before its event exists.
	if res.WatchSentP50Ms < 1 || res.WatchSentP50Ms <= res.WatchP50Ms || res.WatchP99Ms < res.WatchP50Ms {
		t.Fatalf("latencies: ack→event p50 %.3f p99 %.3f, sent→event p50 %.3f (a put takes 1 ms)",
			res.WatchP50Ms, res.WatchP99Ms, res.WatchSentP50Ms)
	}
}

func TestWatchersCountMissedEvents(t *testing.T) {
	sys := &logSystem{drop: map[int]bool{1: true}}
	res := runWatched(t, sys, 2)
	if res.WatchMissed != 1 {
		t.Fatalf("missed %d, want 1 (watcher 1 lost one event)", res.WatchMissed)
	}
}

func TestKeyIndex(t *testing.T) {
	key := make([]byte, 16)
	for _, i := range []uint64{0, 42, 99_999} {
		FormatKey(key, i)
		if got := KeyIndex(key); got != i {
			t.Errorf("KeyIndex(%s) = %d, want %d", key, got, i)
		}
	}
}
