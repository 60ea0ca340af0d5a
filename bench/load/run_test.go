package load

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeTarget records calls; every failEvery-th call fails, and keys in
// missing are not found.
type fakeTarget struct {
	mu        sync.Mutex
	puts      map[string]int
	gets      atomic.Int64
	calls     atomic.Int64
	failEvery int64
	delay     time.Duration
}

func newFake() *fakeTarget { return &fakeTarget{puts: map[string]int{}} }

func (f *fakeTarget) call() error {
	n := f.calls.Add(1)
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if f.failEvery > 0 && n%f.failEvery == 0 {
		return errors.New("injected")
	}
	return nil
}

func (f *fakeTarget) Put(_ context.Context, key, value []byte) error {
	if len(value) != 128 {
		return errors.New("wrong value size")
	}
	f.mu.Lock()
	f.puts[string(key)]++
	f.mu.Unlock()
	return f.call()
}

func (f *fakeTarget) Get(_ context.Context, key []byte) (bool, error) {
	f.gets.Add(1)
	return key[len(key)-1] != '7', f.call() // keys ending in 7 are missing
}

func quick() Workload {
	w := DefaultWorkload()
	w.Clients, w.Warmup, w.Duration, w.Ops = 4, 0, 0, 1000
	return w
}

func TestRunOpsMode(t *testing.T) {
	f := newFake()
	res, err := Run(context.Background(), quick(), []Target{f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 1000 || res.Errors != 0 || f.calls.Load() != 1000 {
		t.Fatalf("ops %d errors %d calls %d, want exactly 1000 calls, all measured", res.Ops, res.Errors, f.calls.Load())
	}
	if res.Op != "put" || res.Clients != 4 || res.OpsPerSec <= 0 || res.MaxMs <= 0 {
		t.Errorf("result %+v", res)
	}
	for k := range f.puts {
		if len(k) != 16 || k[0] != 'k' {
			t.Fatalf("key %q is not a 16-byte generated key", k)
		}
	}
}

func TestRunCountsErrorsAndNotFound(t *testing.T) {
	f := newFake()
	f.failEvery = 10
	w := quick()
	w.ReadRatio = 1
	w.KeyDist = Sequential
	w.Keyspace = 100
	res, err := Run(context.Background(), w, []Target{f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Op != "get" || f.gets.Load() != 1000 || len(f.puts) != 0 {
		t.Fatalf("op %s, %d gets, %d puts: want gets only", res.Op, f.gets.Load(), len(f.puts))
	}
	if res.Errors != 100 || res.Ops != 900 {
		t.Errorf("errors %d ops %d, want 100 and 900", res.Errors, res.Ops)
	}
	// Sequential over 100 keys: one in ten ends in 7, whether or not the
	// call then failed; about 90 of the 900 successes.
	if res.NotFound < 50 || res.NotFound > 130 {
		t.Errorf("not found %d, want about 90", res.NotFound)
	}
	if !strings.Contains(res.FirstError, "injected") {
		t.Errorf("first error %q", res.FirstError)
	}
}

func TestRunMixed(t *testing.T) {
	f := newFake()
	w := quick()
	w.Ops = 4000
	w.ReadRatio = 0.25
	res, err := Run(context.Background(), w, []Target{f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g := f.gets.Load(); res.Op != "mixed" || g < 800 || g > 1200 {
		t.Errorf("op %s with %d gets of 4000, want about 1000", res.Op, g)
	}
}

func TestRunDurationExcludesWarmup(t *testing.T) {
	f := newFake()
	f.delay = time.Millisecond
	w := quick()
	w.Ops, w.Duration, w.Warmup = 0, 300*time.Millisecond, 200*time.Millisecond
	res, err := Run(context.Background(), w, []Target{f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.DurationS < 0.3 || res.DurationS > 1.5 {
		t.Errorf("measured %.3f s, want about 0.3", res.DurationS)
	}
	// About 2/5 of the calls ran during the warmup and are not measured.
	if calls := f.calls.Load(); res.Ops <= 0 || res.Ops >= calls*4/5 {
		t.Errorf("%d measured of %d calls: the warmup was measured or nothing was", res.Ops, calls)
	}
	if res.WarmupS != 0.2 {
		t.Errorf("warmup_s = %v", res.WarmupS)
	}
}

func TestRunSpreadsWorkersOverTargets(t *testing.T) {
	a, b := newFake(), newFake()
	a.delay, b.delay = time.Millisecond, time.Millisecond // so that every worker gets calls
	res, err := Run(context.Background(), quick(), []Target{a, b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.calls.Load() == 0 || b.calls.Load() == 0 || a.calls.Load()+b.calls.Load() != res.Ops {
		t.Errorf("calls %d + %d, ops %d: want both targets used", a.calls.Load(), b.calls.Load(), res.Ops)
	}
}

func TestRunPreload(t *testing.T) {
	f := newFake()
	w := quick()
	w.Preload, w.Keyspace, w.Ops = true, 500, 10
	if _, err := Run(context.Background(), w, []Target{f}, nil); err != nil {
		t.Fatal(err)
	}
	if len(f.puts) != 500 {
		t.Errorf("%d distinct keys written, want all 500", len(f.puts))
	}
	f = newFake()
	f.failEvery = 100
	if _, err := Run(context.Background(), w, []Target{f}, nil); err == nil || !strings.Contains(err.Error(), "preload: 5 of 500 puts failed; first: injected") {
		t.Errorf("preload with failures: %v", err)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	f := newFake()
	f.delay = time.Millisecond
	w := quick()
	w.Ops, w.Duration = 0, time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, w, []Target{f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 5*time.Second || res.Ops == 0 {
		t.Errorf("ran %v, %d ops: want it to stop soon after cancel with what it measured", time.Since(start), res.Ops)
	}
}

func TestRunRejectsInvalid(t *testing.T) {
	w := quick()
	w.Clients = 0
	if _, err := Run(context.Background(), w, []Target{newFake()}, nil); err == nil {
		t.Error("invalid workload accepted")
	}
	if _, err := Run(context.Background(), quick(), nil, nil); err == nil {
		t.Error("no target accepted")
	}
}

func TestProgressLine(t *testing.T) {
	var buf syncBuffer
	c := &counters{}
	c.setPhase("run")
	c.add(nil)
	c.add(errors.New("x"))
	stop := startProgress(&buf, c)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(buf.String(), "ops/s") && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	out := buf.String()
	if !strings.Contains(out, "run") || !strings.Contains(out, "ops/s") || !strings.Contains(out, "1 errors") {
		t.Errorf("progress line %q", out)
	}
	if !strings.HasSuffix(out, "\r\033[K") {
		t.Errorf("progress line not cleared at the end: %q", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type nopTarget struct{}

func (nopTarget) Put(context.Context, []byte, []byte) error { return nil }
func (nopTarget) Get(context.Context, []byte) (bool, error) { return true, nil }

// BenchmarkRunLoop measures the generator's own cost per operation with a
// target that does nothing: the loop must stay far below an RPC's cost and
// allocate only its sample chunks.
func BenchmarkRunLoop(b *testing.B) {
	w := DefaultWorkload()
	w.Clients, w.Warmup, w.Duration, w.Ops, w.ReadRatio = 4, 0, 0, int64(b.N), 0.5
	b.ReportAllocs()
	b.ResetTimer()
	if _, err := Run(context.Background(), w, []Target{nopTarget{}}, nil); err != nil {
		b.Fatal(err)
	}
}
