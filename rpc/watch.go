package rpc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/statemachine"
)

// Watcher is what Watch needs from a node (node.Node implements it): the
// change history in local state and a signal at every apply.
type Watcher interface {
	NextApply() <-chan struct{}
	History(ctx context.Context, q statemachine.HistoryQuery) (statemachine.HistoryResult, error)
	HistoryEnabled() bool
	Ready() bool
}

// Pages of one read: enough to keep a busy watcher's messages large, small
// enough that a narrow watch over a busy history answers progress often.
// A page also holds at most Limits.MaxRangeBytes of keys and values; each
// bound may be passed by the rest of one revision (pages never split one),
// so a page is sent as messages of at most MaxRangeBytes each
// (watchMessages).
const (
	watchPageEvents = 1000
	watchPageScan   = 10000
)

// Watch serves one watcher: read the history from the next revision,
// send what matched, wait for the next apply (or a progress tick), repeat.
// A node that stops being ready ends the stream with Unavailable so that
// the client resumes on another node.
func (s *kvServer) Watch(ctx context.Context, req *connect.Request[kvdv1.WatchRequest], stream *connect.ServerStream[kvdv1.WatchResponse]) error {
	return s.watch(ctx, req.Msg, stream)
}

func (s *kvServer) watch(ctx context.Context, m *kvdv1.WatchRequest, stream sender[kvdv1.WatchResponse]) error {
	w, ok := s.store.(Watcher)
	if !ok || !w.HistoryEnabled() {
		return connect.NewError(connect.CodeFailedPrecondition, errors.New("watch: this node keeps no change history (--watch-history is negative); watch another node or restart it with history"))
	}
	q, err := s.watchQuery(m)
	if err != nil {
		return err
	}
	progress := time.Second
	if ms := m.ProgressIntervalMs; ms > 0 {
		progress = time.Duration(ms) * time.Millisecond
	}
	tick := time.NewTicker(progress)
	defer tick.Stop()
	sent, first := time.Now(), true
	for {
		wake := w.NextApply()
		if !w.Ready() {
			return connect.NewError(connect.CodeUnavailable, errors.New("watch: this node is not ready (catching up or cut off); resume on another node from the last revision seen + 1"))
		}
		res, err := w.History(ctx, q)
		if err != nil {
			return watchError(err, q.From)
		}
		q.From = res.Next
		if len(res.Events) > 0 || time.Since(sent) >= progress || first {
			first = false
			for _, m := range watchMessages(res, s.limits.MaxRangeBytes) {
				if err := stream.Send(m); err != nil {
					return err
				}
			}
			sent = time.Now()
		}
		if res.More {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-tick.C:
		}
	}
}

func (s *kvServer) watchQuery(m *kvdv1.WatchRequest) (statemachine.HistoryQuery, error) {
	q := statemachine.HistoryQuery{From: m.StartRevision, Key: m.Key, Limit: watchPageEvents, MaxBytes: s.limits.MaxRangeBytes, MaxScan: watchPageScan}
	switch {
	case m.Prefix && len(m.RangeEnd) > 0:
		return q, invalid("watch: give either prefix or range_end, not both")
	case m.Prefix:
		q.End = statemachine.PrefixEnd(m.Key)
		if q.End == nil {
			q.End = []byte{0} // every key
		}
	case len(m.RangeEnd) > 0:
		q.End = m.RangeEnd
		if !(len(q.End) == 1 && q.End[0] == 0) && string(q.End) <= string(m.Key) {
			return q, invalid("watch: range_end %q must sort after key %q (or be a single 0 byte: every key from key on)", q.End, m.Key)
		}
	default:
		if err := s.limits.checkKey("watch", m.Key); err != nil {
			return q, err
		}
	}
	return q, nil // From 0: the first read answers with Next = now
}

// watchMessages cuts a page into messages of at most maxBytes of keys and
// values each (at least one event). One revision can pass the page bound
// (a Txn at the limits carries ~4.5 MiB of events) and a plain grpc-go
// client refuses a message over 4 MiB by default, so a revision may span
// messages: a message that ends inside a revision names the revision
// before it (every change up to Revision has been sent, as always) and the
// rest follows in the next. The last message names the page's end.
func watchMessages(res statemachine.HistoryResult, maxBytes int) []*kvdv1.WatchResponse {
	var out []*kvdv1.WatchResponse
	events := res.Events
	for {
		n, size := 0, 0
		for n < len(events) && (n == 0 || size+eventBytes(events[n]) <= maxBytes) {
			size += eventBytes(events[n])
			n++
		}
		if n == len(events) {
			return append(out, watchResponse(events, res.Next-1))
		}
		out = append(out, watchResponse(events[:n], events[n].Revision-1))
		events = events[n:]
	}
}

func eventBytes(e statemachine.Event) int { return len(e.Key) + len(e.Value) }

func watchResponse(events []statemachine.Event, revision uint64) *kvdv1.WatchResponse {
	out := &kvdv1.WatchResponse{Revision: revision, Events: make([]*kvdv1.WatchEvent, len(events))}
	for i, e := range events {
		ev := &kvdv1.WatchEvent{Key: e.Key, Value: e.Value, ModRevision: e.Revision, Created: e.Created, Type: kvdv1.EventType_EVENT_TYPE_PUT}
		if e.Type == statemachine.EventDelete {
			ev.Type = kvdv1.EventType_EVENT_TYPE_DELETE
		}
		out.Events[i] = ev
	}
	return out
}

func watchError(err error, from uint64) error {
	var ce *statemachine.CompactedError
	if errors.As(err, &ce) {
		e := connect.NewError(connect.CodeOutOfRange, fmt.Errorf(
			"revision %d is compacted: the oldest revision still available is %d (start there, or at 0 for changes from now)", from, ce.Floor))
		if d, err := connect.NewErrorDetail(&kvdv1.Compacted{OldestRevision: ce.Floor}); err == nil {
			e.AddDetail(d)
		}
		return e
	}
	return toConnect(err)
}
