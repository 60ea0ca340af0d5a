package load

import (
	"errors"
	"testing"
	"time"
)

func durations(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, v := range ms {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	oneToHundred := make([]time.Duration, 100)
	for i := range oneToHundred {
		oneToHundred[i] = time.Duration(i+1) * time.Millisecond
	}
	thousand := make([]time.Duration, 1000)
	for i := range thousand {
		thousand[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", durations(7), 99.9, 7 * time.Millisecond},
		{"p50 of 1..100", oneToHundred, 50, 50 * time.Millisecond},
		{"p90 of 1..100", oneToHundred, 90, 90 * time.Millisecond},
		{"p99 of 1..100", oneToHundred, 99, 99 * time.Millisecond},
		{"p99.9 of 1..100 is the max", oneToHundred, 99.9, 100 * time.Millisecond},
		{"p100 is the max", oneToHundred, 100, 100 * time.Millisecond},
		{"p0 is the min", oneToHundred, 0, time.Millisecond},
		// 99.9/100·1000 is 999.0000000000001 in float64: still rank 999.
		{"p99.9 of 1000 is rank 999", thousand, 99.9, 999},
		{"p50 of two is the lower", durations(1, 2), 50, time.Millisecond},
		{"p51 of two is the upper", durations(1, 2), 51, 2 * time.Millisecond},
	} {
		if got := Percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: Percentile(p=%v) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
}

func TestPackClampsAndOrders(t *testing.T) {
	if got := pack(3, -time.Second); got != 3<<latBits {
		t.Errorf("negative latency packs to %x, want %x", got, uint64(3)<<latBits)
	}
	if got := pack(0, time.Hour); got&latMask != latMask {
		t.Errorf("an hour packs to latency %d, want the clamp %d", got&latMask, uint64(latMask))
	}
	// Any latency in second 1 sorts after every latency in second 0.
	if pack(1, 0) <= pack(0, 10*time.Minute) {
		t.Error("packed samples do not sort by second first")
	}
}

func TestSummarize(t *testing.T) {
	a, b := &recorder{}, &recorder{}
	// Second 0: latencies 1..4 ms from two workers; second 1: 10 ms, and
	// two errors; second 2: one error only.
	a.ok(0, 1*time.Millisecond)
	a.ok(0, 3*time.Millisecond)
	b.ok(0, 2*time.Millisecond)
	b.ok(0, 4*time.Millisecond)
	b.ok(1, 10*time.Millisecond)
	b.notFound = 1
	a.fail(1, errors.New("first"))
	b.fail(1, errors.New("second"))
	a.fail(2, errors.New("third"))

	var res Result
	summarize(&res, []*recorder{a, b}, 2500*time.Millisecond)
	if res.Ops != 5 || res.Errors != 3 || res.NotFound != 1 {
		t.Fatalf("ops/errors/not found = %d/%d/%d, want 5/3/1", res.Ops, res.Errors, res.NotFound)
	}
	if res.OpsPerSec != 2 {
		t.Errorf("ops/s = %v, want 5 ops / 2.5 s = 2", res.OpsPerSec)
	}
	if res.P50Ms != 3 || res.P90Ms != 10 || res.MaxMs != 10 || res.MeanMs != 4 {
		t.Errorf("p50/p90/max/mean = %v/%v/%v/%v ms, want 3/10/10/4", res.P50Ms, res.P90Ms, res.MaxMs, res.MeanMs)
	}
	if res.FirstError != "first" || res.Percentiles != "exact" {
		t.Errorf("first error %q, percentiles %q", res.FirstError, res.Percentiles)
	}
	want := []Second{
		{T: 0, OpsPerSec: 4, P50Ms: 2, P99Ms: 4, MaxMs: 4},
		{T: 1, OpsPerSec: 1, Errors: 2, P50Ms: 10, P99Ms: 10, MaxMs: 10},
		{T: 2, OpsPerSec: 0, Errors: 1}, // the last half second
	}
	if len(res.Series) != len(want) {
		t.Fatalf("series = %+v, want %+v", res.Series, want)
	}
	for i := range want {
		if res.Series[i] != want[i] {
			t.Errorf("second %d = %+v, want %+v", i, res.Series[i], want[i])
		}
	}
}

func TestSummarizePartialLastSecondRate(t *testing.T) {
	r := &recorder{}
	for range 10 {
		r.ok(1, time.Millisecond)
	}
	var res Result
	summarize(&res, []*recorder{r}, 1500*time.Millisecond)
	if got := res.Series[1].OpsPerSec; got != 20 {
		t.Errorf("10 ops in the last half second: rate %v, want 20", got)
	}
}

func TestSummarizeDropsAShortTail(t *testing.T) {
	r := &recorder{}
	r.ok(0, time.Millisecond)
	r.ok(1, time.Millisecond) // completed 10 ms into second 1
	var res Result
	summarize(&res, []*recorder{r}, 1010*time.Millisecond)
	if len(res.Series) != 1 || res.Ops != 2 {
		t.Errorf("series %+v, ops %d: want the 10 ms tail out of the series, in the totals", res.Series, res.Ops)
	}
}

func TestSummarizeNothing(t *testing.T) {
	var res Result
	summarize(&res, []*recorder{{}}, 0)
	if res.Ops != 0 || res.OpsPerSec != 0 || res.P99Ms != 0 || len(res.Series) != 0 {
		t.Errorf("empty run: %+v", res)
	}
}

func TestRecorderChunks(t *testing.T) {
	r := &recorder{}
	n := 2*chunkLen + 5
	for i := range n {
		r.ok(0, time.Duration(i))
	}
	if r.count() != n || len(r.chunks) != 2 {
		t.Fatalf("count %d in %d full chunks, want %d in 2", r.count(), len(r.chunks), n)
	}
	var res Result
	summarize(&res, []*recorder{r}, time.Second)
	if res.Ops != int64(n) || res.MaxMs != ms(time.Duration(n-1)) {
		t.Errorf("ops %d max %v ms, want %d and %v", res.Ops, res.MaxMs, n, ms(time.Duration(n-1)))
	}
}
