package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Run drives targets with w (worker i uses targets[i % len(targets)]) and
// returns the measurements. progress, if not nil, gets a status line about
// once a second (pass os.Stderr only when it is a terminal: the line is
// rewritten in place with a carriage return).
func Run(ctx context.Context, w Workload, targets []Target, progress io.Writer) (*Result, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		return nil, errors.New("load: no target")
	}
	value := makeValue(w.ValueSize, w.Seed)
	live := &counters{}
	stopProgress := startProgress(progress, live)
	defer stopProgress()

	if w.Preload {
		live.setPhase("preload")
		if err := preload(ctx, w, targets, value, live); err != nil {
			return nil, err
		}
	}

	r := &runner{w: w, value: value, live: live, start: time.Now(), measure: w.Warmup}
	live.setPhase("warmup")
	if w.Warmup == 0 {
		live.setPhase("run")
	}
	phaseTimer := time.AfterFunc(w.Warmup, func() { live.setPhase("run") })
	defer phaseTimer.Stop()
	stopOnCancel := context.AfterFunc(ctx, func() { r.stop.Store(true) })
	defer stopOnCancel()

	var seq atomic.Uint64
	var wg sync.WaitGroup
	recs := make([]*recorder, w.Clients)
	for i := range w.Clients {
		recs[i] = &recorder{}
		gen := newKeyGen(w.KeyDist, w.Keyspace, &seq, w.Seed, uint64(i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.client(ctx, recs[i], targets[i%len(targets)], gen)
		}()
	}
	wg.Wait()
	return r.result(recs), nil
}

// runner is one run's shared state; measure is the offset from start at
// which measuring begins (after the warmup).
type runner struct {
	w       Workload
	value   []byte
	live    *counters
	start   time.Time
	measure time.Duration
	stop    atomic.Bool
	issued  atomic.Int64
}

// client is one closed-loop client: it issues calls until the run ends
// (duration or op count after the warmup, or ctx) and records them.
func (r *runner) client(ctx context.Context, rec *recorder, t Target, gen *keyGen) {
	w := r.w
	key := make([]byte, w.KeySize)
	for !r.stop.Load() {
		began := time.Since(r.start)
		measured := began >= r.measure
		if measured {
			if w.Duration > 0 && began >= r.measure+w.Duration {
				return
			}
			if w.Ops > 0 && r.issued.Add(1) > w.Ops {
				return
			}
		}
		FormatKey(key, gen.next())
		found, err := true, error(nil)
		if w.ReadRatio > 0 && gen.rng.Float64() < w.ReadRatio {
			found, err = t.Get(ctx, key)
		} else {
			err = t.Put(ctx, key, r.value)
		}
		done := time.Since(r.start)
		if err != nil && ctx.Err() != nil {
			return // interrupted: not the target's failure
		}
		r.live.add(err)
		if measured {
			rec.record(done-r.measure, done-began, found, err)
		}
	}
}

// record files one measured call that ended at offset end and took d.
func (rec *recorder) record(end, d time.Duration, found bool, err error) {
	sec := int(end / time.Second)
	rec.last = max(rec.last, end)
	if err != nil {
		rec.fail(sec, err)
		return
	}
	rec.ok(sec, d)
	if !found {
		rec.notFound++
	}
}

// result summarizes the clients' records.
func (r *runner) result(recs []*recorder) *Result {
	w := r.w
	elapsed := time.Duration(0)
	for _, rec := range recs {
		elapsed = max(elapsed, rec.last)
	}
	if elapsed == 0 { // nothing completed while measuring
		elapsed = max(0, time.Since(r.start)-r.measure)
	}
	res := &Result{
		Op:           opName(w.ReadRatio),
		Clients:      w.Clients,
		ReadRatio:    w.ReadRatio,
		KeySize:      w.KeySize,
		ValueSize:    w.ValueSize,
		Keyspace:     w.Keyspace,
		KeyDist:      w.KeyDist,
		WarmupS:      w.Warmup.Seconds(),
		GoMaxProcs:   runtime.GOMAXPROCS(0),
		MeasuredFrom: r.start.Add(r.measure),
	}
	summarize(res, recs, elapsed)
	res.BenchRSSMB = peakRSSMB()
	return res
}

func opName(readRatio float64) string {
	switch readRatio {
	case 0:
		return "put"
	case 1:
		return "get"
	}
	return "mixed"
}

// preload writes every key of the keyspace once, split among the workers.
func preload(ctx context.Context, w Workload, targets []Target, value []byte, live *counters) error {
	var (
		next   atomic.Uint64
		failed atomic.Int64
		first  atomic.Pointer[error]
		wg     sync.WaitGroup
	)
	n := uint64(w.Keyspace)
	for i := range w.Clients {
		wg.Add(1)
		go func(t Target) {
			defer wg.Done()
			key := make([]byte, w.KeySize)
			for ctx.Err() == nil {
				k := next.Add(1) - 1
				if k >= n {
					return
				}
				FormatKey(key, k)
				err := t.Put(ctx, key, value)
				live.add(err)
				if err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, &err)
				}
			}
		}(targets[i%len(targets)])
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("preload: %d of %d puts failed; first: %w", f, n, *first.Load())
	}
	return nil
}

// counters are the live totals behind the progress line, warmup included.
type counters struct {
	ops, errs atomic.Int64
	phase     atomic.Pointer[string]
}

func (c *counters) add(err error) {
	if err != nil {
		c.errs.Add(1)
	} else {
		c.ops.Add(1)
	}
}

func (c *counters) setPhase(p string) { c.phase.Store(&p) }

// startProgress prints a status line to w every second until the returned
// function is called, which clears it.
func startProgress(w io.Writer, c *counters) (stop func()) {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start, last, lastAt := time.Now(), int64(0), time.Now()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case now := <-t.C:
				ops := c.ops.Load()
				rate := float64(ops-last) / now.Sub(lastAt).Seconds()
				last, lastAt = ops, now
				phase := "starting"
				if p := c.phase.Load(); p != nil {
					phase = *p
				}
				fmt.Fprintf(w, "\r\033[K%-7s %6.0fs  %9.0f ops/s  %d errors",
					phase, now.Sub(start).Seconds(), rate, c.errs.Load())
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// peakRSSMB is this process's peak resident set (VmHWM) in MB, or 0 when
// /proc is not there.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	kb := procStatusKB(string(b), "VmHWM")
	return float64(kb) / 1024
}

// procStatusKB returns the value in kB of field (e.g. "VmRSS") in the text
// of a /proc/PID/status file, or 0 if it is absent.
func procStatusKB(status, field string) int64 {
	for line := range strings.Lines(status) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return v
	}
	return 0
}
