package load

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Watchers measure a change stream during a put load: N watches of every
// key the workload writes (KeyPrefix), opened before the load and read
// until every acknowledged put has arrived. Each put's sending and
// acknowledgement are noted by its revision and key (Acks, filled by the
// Target); each event's arrival by the watcher. Afterwards, events/s is
// the arrivals inside the measured window, and for the puts acknowledged
// inside the window: the latency from acknowledgement to event (negative
// when the event arrived first: the watcher's node applied the entry and
// sent it before the writer had its answer; WatchBeforeAck counts those),
// and from sending the put to its event (never negative).

// KeyPrefix starts every key of a workload (FormatKey).
const KeyPrefix = "k"

// WatchTarget opens watches on one system.
type WatchTarget interface {
	// Watch watches every key under prefix from now until ctx ends,
	// reporting to sink from one goroutine: Progress once the watch is
	// established and after each message, Event for every put. It returns
	// when ctx ends, or with an error that ends the watch.
	Watch(ctx context.Context, prefix []byte, sink *WatchSink) error
}

// ackID names one put: its revision and its key's index.
type ackID struct{ rev, key uint64 }

// ack is when a put was sent and acknowledged, since Acks.base.
type ack struct{ sent, at time.Duration }

// Acks records when each put was sent and acknowledged. Safe for
// concurrent use.
type Acks struct {
	base time.Time
	mu   sync.Mutex
	at   map[ackID]ack
	max  uint64 // highest revision acknowledged
}

// NewAcks returns an empty record.
func NewAcks() *Acks { return &Acks{base: time.Now(), at: make(map[ackID]ack, 1<<16)} }

// Put notes that the put of key (a FormatKey key) sent at sent was
// acknowledged now, at revision rev.
func (a *Acks) Put(rev uint64, key []byte, sent time.Time) {
	v := ack{sent.Sub(a.base), time.Since(a.base)}
	id := ackID{rev, KeyIndex(key)}
	a.mu.Lock()
	a.at[id] = v
	a.max = max(a.max, rev)
	a.mu.Unlock()
}

func (a *Acks) maxRev() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.max
}

// KeyIndex is the index FormatKey wrote into key (its digits after the
// first byte).
func KeyIndex(key []byte) uint64 {
	var i uint64
	for _, c := range key[min(1, len(key)):] {
		i = i*10 + uint64(c-'0')
	}
	return i
}

// WatchSink is where one watcher reports. Only its watch's goroutine
// calls it.
type WatchSink struct {
	base    time.Time
	arrived []arrival
	mu      sync.Mutex
	rev     uint64 // revision reached (the last message's)
	started bool
	moved   chan struct{} // a message came
}

type arrival struct {
	at  time.Duration // since base
	rev uint64
	key uint64
}

// Event notes the arrival, now, of the put of key at revision rev.
func (s *WatchSink) Event(rev uint64, key []byte) {
	s.arrived = append(s.arrived, arrival{time.Since(s.base), rev, KeyIndex(key)})
}

// Progress notes that every change up to rev has been delivered.
func (s *WatchSink) Progress(rev uint64) {
	s.mu.Lock()
	s.rev, s.started = max(s.rev, rev), true
	s.mu.Unlock()
	select {
	case s.moved <- struct{}{}:
	default:
	}
}

func (s *WatchSink) reached() (rev uint64, started bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev, s.started
}

// WatchSet is a running set of watchers.
type WatchSet struct {
	acks   *Acks
	sinks  []*WatchSink
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errsMu sync.Mutex
	errs   []error // per watcher
}

// StartWatchers opens n watches of KeyPrefix, watcher i on
// targets[i % len(targets)], and waits (up to timeout) until every one is
// established. acks is where the load's Target notes its puts.
func StartWatchers(ctx context.Context, n int, targets []WatchTarget, acks *Acks, timeout time.Duration) (*WatchSet, error) {
	if n < 1 || len(targets) == 0 {
		return nil, fmt.Errorf("load: %d watchers on %d targets", n, len(targets))
	}
	ctx, cancel := context.WithCancel(ctx)
	ws := &WatchSet{acks: acks, cancel: cancel, errs: make([]error, n)}
	for i := range n {
		s := &WatchSink{base: acks.base, moved: make(chan struct{}, 1)}
		ws.sinks = append(ws.sinks, s)
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			if err := targets[i%len(targets)].Watch(ctx, []byte(KeyPrefix), s); err != nil && ctx.Err() == nil {
				ws.errsMu.Lock()
				ws.errs[i] = err
				ws.errsMu.Unlock()
			}
			s.Progress(0) // wake waiters
		}()
	}
	deadline := time.After(timeout)
	for i, s := range ws.sinks {
		for {
			if _, ok := s.reached(); ok {
				break
			}
			select {
			case <-s.moved:
				continue
			case <-deadline:
				ws.Stop()
				return nil, fmt.Errorf("load: watcher %d not established within %s: %w", i, timeout, errors.Join(ws.errs[i], ctx.Err()))
			}
		}
	}
	ws.errsMu.Lock()
	err := errors.Join(ws.errs...)
	ws.errsMu.Unlock()
	if err != nil {
		ws.Stop()
		return nil, fmt.Errorf("load: watchers: %w", err)
	}
	return ws, nil
}

// Stop closes the watches without measuring (Finish does both).
func (ws *WatchSet) Stop() {
	ws.cancel()
	ws.wg.Wait()
}

// Finish waits (up to timeout) until every watcher has reached the
// highest revision acknowledged, stops them, and adds the watch figures
// to res, whose measured window Run set.
func (ws *WatchSet) Finish(res *Result, timeout time.Duration) error {
	last := ws.acks.maxRev()
	deadline := time.After(timeout)
	for _, s := range ws.sinks {
	wait:
		for {
			if rev, _ := s.reached(); rev >= last {
				break
			}
			select {
			case <-s.moved:
			case <-deadline:
				break wait // counted as missed below
			}
		}
	}
	ws.Stop()
	ws.summarize(res)
	return errors.Join(ws.errs...)
}

// summarize fills res's watch fields from every arrival.
func (ws *WatchSet) summarize(res *Result) {
	from := res.MeasuredFrom.Sub(ws.acks.base)
	to := from + time.Duration(res.DurationS*float64(time.Second))
	inWindow := 0
	for _, v := range ws.acks.at {
		if v.at >= from && v.at < to {
			inWindow++
		}
	}
	var fromAck, fromSent []time.Duration
	var arrived, early int64
	for _, s := range ws.sinks {
		for _, a := range s.arrived {
			if a.at >= from && a.at < to {
				arrived++
			}
			v, ok := ws.acks.at[ackID{a.rev, a.key}]
			if !ok || v.at < from || v.at >= to {
				continue
			}
			if a.at < v.at {
				early++
			}
			fromAck = append(fromAck, a.at-v.at)
			fromSent = append(fromSent, a.at-v.sent)
		}
	}
	slices.Sort(fromAck)
	slices.Sort(fromSent)
	res.Watchers = len(ws.sinks)
	if to > from {
		res.WatchEventsPerSec = float64(arrived) / (to - from).Seconds()
	}
	res.WatchP50Ms = ms(Percentile(fromAck, 50))
	res.WatchP99Ms = ms(Percentile(fromAck, 99))
	res.WatchSentP50Ms = ms(Percentile(fromSent, 50))
	res.WatchSentP99Ms = ms(Percentile(fromSent, 99))
	if n := len(fromAck); n > 0 {
		res.WatchMaxMs = ms(fromAck[n-1])
	}
	matched := int64(len(fromAck))
	res.WatchBeforeAck = early
	res.WatchMissed = int64(inWindow)*int64(len(ws.sinks)) - matched
}
