package load

import (
	"math"
	"slices"
	"time"
)

// Result is the outcome of one run. Its JSON form (WriteJSON) is the
// interface for scripts: fields are added, never renamed.
type Result struct {
	// Mode names what was measured ("kvd", "ceiling", "etcd"); Op is "put",
	// "get" or "mixed". Set by Run's caller except Op.
	Mode string `json:"mode"`
	Op   string `json:"op"`
	// Label is the caller's tag for the run (bench --label), e.g. the
	// round of a repeated comparison.
	Label       string  `json:"label,omitempty"`
	Target      string  `json:"target,omitempty"`
	Protocol    string  `json:"protocol,omitempty"`
	Transport   string  `json:"transport,omitempty"`
	Consistency string  `json:"consistency,omitempty"`
	Clients     int     `json:"clients"`
	ReadRatio   float64 `json:"read_ratio"`
	KeySize     int     `json:"key_size"`
	ValueSize   int     `json:"value_size"`
	Keyspace    int     `json:"keyspace"`
	KeyDist     KeyDist `json:"key_dist"`
	WarmupS     float64 `json:"warmup_s"`
	// DurationS is the measured time: from the end of the warmup to the
	// completion of the last measured call.
	DurationS float64 `json:"duration_s"`
	// Ops counts successful measured calls (Gets of missing keys included,
	// also counted in NotFound); Errors counts failed ones.
	Ops       int64   `json:"ops"`
	Errors    int64   `json:"errors"`
	NotFound  int64   `json:"not_found"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// Latencies of successful calls, in milliseconds.
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
	// Percentiles says how they were computed: "exact" (every latency
	// kept, nearest rank).
	Percentiles string `json:"percentiles"`
	FirstError  string `json:"first_error,omitempty"`
	GoMaxProcs  int    `json:"gomaxprocs"`
	// BenchRSSMB is the generator's own peak RSS (VmHWM), 0 if unknown.
	BenchRSSMB float64 `json:"bench_rss_mb,omitempty"`
	// Watch figures, with watchers (StartWatchers): how many, where
	// (WatchOn: "all" nodes or "observers"), events delivered per second
	// over all watchers inside the measured window, and the latency from a
	// put's acknowledgement to its event at each watcher, for the puts
	// acknowledged inside the window: negative when the event arrived
	// before the put's answer (WatchBeforeAck counts those); WatchSent*
	// from sending the put instead. WatchMissed counts the acknowledged
	// puts some watcher never received (0 unless something is broken).
	Watchers          int     `json:"watchers,omitempty"`
	WatchOn           string  `json:"watch_on,omitempty"`
	WatchEventsPerSec float64 `json:"watch_events_per_sec,omitempty"`
	WatchP50Ms        float64 `json:"watch_p50_ms,omitempty"`
	WatchP99Ms        float64 `json:"watch_p99_ms,omitempty"`
	WatchMaxMs        float64 `json:"watch_max_ms,omitempty"`
	WatchSentP50Ms    float64 `json:"watch_sent_p50_ms,omitempty"`
	WatchSentP99Ms    float64 `json:"watch_sent_p99_ms,omitempty"`
	WatchBeforeAck    int64   `json:"watch_before_ack,omitempty"`
	WatchMissed       int64   `json:"watch_missed,omitempty"`
	// MeasuredFrom is when the measured window began (after the warmup).
	MeasuredFrom time.Time `json:"-"`
	// Series has one entry per second of the measurement, for plots.
	Series []Second `json:"-"`
}

// Second is one second of a run.
type Second struct {
	T         int     // seconds since the measurement began
	OpsPerSec float64 // successful calls completed in this second, per second
	Errors    int64
	P50Ms     float64
	P99Ms     float64
	MaxMs     float64
}

// Samples pack the second a call completed in with its latency in one
// uint64, so that sorting the packed values orders them by second, then by
// latency: per-second percentiles are then contiguous ranges.
const (
	latBits  = 40 // latencies up to 2⁴⁰ ns ≈ 18 minutes
	latMask  = 1<<latBits - 1
	chunkLen = 16384
)

// recorder holds one worker's measurements; only that worker writes it.
type recorder struct {
	chunks   [][]uint64
	cur      []uint64
	errs     []int64 // errors per second
	notFound int64
	firstErr error
	// last is when the last measured call completed, since the
	// measurement began.
	last time.Duration
}

func pack(sec int, lat time.Duration) uint64 {
	l := uint64(max(lat, 0))
	return uint64(sec)<<latBits | min(l, latMask)
}

func (r *recorder) ok(sec int, lat time.Duration) {
	if len(r.cur) == cap(r.cur) {
		if r.cur != nil {
			r.chunks = append(r.chunks, r.cur)
		}
		r.cur = make([]uint64, 0, chunkLen)
	}
	r.cur = append(r.cur, pack(sec, lat))
}

func (r *recorder) fail(sec int, err error) {
	for len(r.errs) <= sec {
		r.errs = append(r.errs, 0)
	}
	r.errs[sec]++
	if r.firstErr == nil {
		r.firstErr = err
	}
}

func (r *recorder) count() int {
	n := len(r.cur)
	for _, c := range r.chunks {
		n += len(c)
	}
	return n
}

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted: the smallest value such that at least p% of the values are ≤ it.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The epsilon keeps p/100·n from rounding up past an exact integer
	// (99.9/100·1000 is 999.0000000000001 in float64).
	rank := int(math.Ceil(p/100*float64(n) - 1e-9))
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// summarize fills res's counts, rates, percentiles and series from the
// workers' recorders; elapsed is the measured time.
func summarize(res *Result, recs []*recorder, elapsed time.Duration) {
	n := 0
	for _, r := range recs {
		n += r.count()
	}
	all := make([]uint64, 0, n)
	var errsBySec []int64
	for _, r := range recs {
		for _, c := range r.chunks {
			all = append(all, c...)
		}
		all = append(all, r.cur...)
		res.NotFound += r.notFound
		for s, e := range r.errs {
			for len(errsBySec) <= s {
				errsBySec = append(errsBySec, 0)
			}
			errsBySec[s] += e
			res.Errors += e
		}
		if r.firstErr != nil && res.FirstError == "" {
			res.FirstError = r.firstErr.Error()
		}
	}
	res.Ops = int64(n)
	res.DurationS = elapsed.Seconds()
	if elapsed > 0 {
		res.OpsPerSec = float64(n) / elapsed.Seconds()
	}
	res.Percentiles = "exact"
	slices.Sort(all)
	res.Series = series(all, errsBySec, elapsed)

	// The overall distribution: the same samples without their second.
	lats := make([]time.Duration, n)
	var sum float64
	for i, v := range all {
		lats[i] = time.Duration(v & latMask)
		sum += float64(lats[i])
	}
	slices.Sort(lats)
	if n > 0 {
		res.MeanMs = sum / float64(n) / 1e6
		res.MaxMs = ms(lats[n-1])
	}
	res.P50Ms = ms(Percentile(lats, 50))
	res.P90Ms = ms(Percentile(lats, 90))
	res.P99Ms = ms(Percentile(lats, 99))
	res.P999Ms = ms(Percentile(lats, 99.9))
}

// series cuts sorted packed samples into seconds. The last second may be
// partial: its rate is over its real length, and it is left out when it
// lasted less than minTail (the calls still in flight when a timed run
// ended), whose few calls over a few milliseconds would plot as a spike.
func series(sorted []uint64, errsBySec []int64, elapsed time.Duration) []Second {
	secs := int((elapsed + time.Second - 1) / time.Second)
	if len(sorted) > 0 {
		secs = max(secs, int(sorted[len(sorted)-1]>>latBits)+1)
	}
	secs = max(secs, len(errsBySec))
	out := make([]Second, secs)
	lats := make([]time.Duration, 0, 1024)
	i := 0
	for s := range out {
		lats = lats[:0]
		for ; i < len(sorted) && int(sorted[i]>>latBits) == s; i++ {
			lats = append(lats, time.Duration(sorted[i]&latMask))
		}
		span := time.Second
		if rest := elapsed - time.Duration(s)*time.Second; rest > 0 && rest < span {
			span = rest
		}
		sec := Second{T: s, OpsPerSec: float64(len(lats)) / span.Seconds()}
		if s < len(errsBySec) {
			sec.Errors = errsBySec[s]
		}
		if len(lats) > 0 { // already sorted: the packed order is by latency within a second
			sec.P50Ms = ms(Percentile(lats, 50))
			sec.P99Ms = ms(Percentile(lats, 99))
			sec.MaxMs = ms(lats[len(lats)-1])
		}
		out[s] = sec
	}
	if n := len(out); n > 1 && elapsed-time.Duration(n-1)*time.Second < minTail {
		out = out[:n-1]
	}
	return out
}

const minTail = 250 * time.Millisecond
