package client

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

const opWatch = "watch"

// ErrCompacted: a Watch asked for revisions older than the history any
// node keeps: every endpoint answered OutOfRange (or failed otherwise,
// once each). The message names the oldest revision still available on
// the nodes that answered.
var ErrCompacted = errors.New("client: revision compacted")

// EventType says what a watch event did.
type EventType int

const (
	EventPut EventType = iota + 1
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return "unknown"
}

// WatchEvent is one change of a key.
type WatchEvent struct {
	Type        EventType
	Key         []byte
	Value       []byte // nil for a delete
	ModRevision uint64
	Created     bool // a put that created the key
}

// WatchResponse is one message of a watch: events in revision order, or
// only progress. Revision: every matching change up to it has been
// delivered. A revision whose events are too large for one message (a big
// Txn) spans messages; Revision stays below it until its last event. Err
// is set on the last message, when the watch ends for good (ctx ended,
// ErrCompacted, a bad request); the channel is closed after it.
type WatchResponse struct {
	Events   []WatchEvent
	Revision uint64
	Err      error
}

// WatchOption adjusts a Watch.
type WatchOption func(*kvdv1.WatchRequest)

// WithPrefix watches every key that starts with the key given to Watch.
func WithPrefix() WatchOption { return func(r *kvdv1.WatchRequest) { r.Prefix = true } }

// WithRange watches [key, end); end = []byte{0} means every key ≥ key.
func WithRange(end []byte) WatchOption { return func(r *kvdv1.WatchRequest) { r.RangeEnd = end } }

// WithRevision starts at revision rev (0, the default: changes from now).
func WithRevision(rev uint64) WatchOption {
	return func(r *kvdv1.WatchRequest) { r.StartRevision = rev }
}

// WithProgress sets how often an idle watch reports progress (default 1s).
// A node silent for three intervals (at least 15 s) is taken for lost and
// the watch resumes on the next endpoint.
func WithProgress(d time.Duration) WatchOption {
	return func(r *kvdv1.WatchRequest) { r.ProgressIntervalMs = uint32(d / time.Millisecond) }
}

// Watch streams the changes of key (or, with options, a prefix or a range)
// until ctx ends. When the node serving it dies, stops being ready or
// sends nothing for 15 s (a partition or a hung process: see
// WithProgress), it resumes on the next endpoint from the revision after
// the last one delivered: no event is lost or delivered twice. A node
// whose history starts after that revision (one that joined or caught up
// from a snapshot keeps no older history) answers OutOfRange; the watch
// then tries every other endpoint once, at once, and ends with
// ErrCompacted only when none of them serves it. The channel
// is closed after a final message with Err set; a caller that cancels ctx
// may stop reading (if the channel is full then, the final message is
// left out).
func (c *Client) Watch(ctx context.Context, key []byte, opts ...WatchOption) <-chan WatchResponse {
	req := &kvdv1.WatchRequest{Key: key}
	for _, o := range opts {
		o(req)
	}
	out := make(chan WatchResponse, 16)
	go c.watch(ctx, req, out)
	return out
}

// watchCursor is where a watch stands: every revision below next has been
// delivered, and the first seen events of revision next (a node sends a
// revision too large for one message in several). next moves to the
// revision of each newer event and past each message's Revision.
type watchCursor struct {
	next uint64
	seen int
}

func (c *Client) watch(ctx context.Context, req *kvdv1.WatchRequest, out chan<- WatchResponse) {
	defer close(out)
	cur := watchCursor{next: req.StartRevision} // next 0 until the first message says where "now" is
	var refusal error                           // since the last delivery, the OutOfRange naming the oldest revision
	err := c.resumeStream(ctx, opWatch, req.Key, func(ctx context.Context, ep *endpoint) (bool, error) {
		r := &kvdv1.WatchRequest{Key: req.Key, RangeEnd: req.RangeEnd, Prefix: req.Prefix, StartRevision: cur.next, ProgressIntervalMs: req.ProgressIntervalMs}
		delivered, err := c.watchOn(ctx, ep, r, &cur, out)
		if delivered {
			refusal = nil
		}
		if connect.CodeOf(err) == connect.CodeOutOfRange {
			refusal = olderFloor(refusal, err)
			err = refusal // the one the watch ends with if no node serves it
		}
		return delivered, err
	}, watchVerdict)
	sendFinal(ctx, out, WatchResponse{Revision: cur.next - min(cur.next, 1), Err: err})
}

// watchOn runs one stream on ep until it fails; cur advances past every
// event delivered. delivered reports whether any message came. A stream
// starts at cur.next, so it sends the events of that revision from the
// first: the cur.seen delivered before are skipped.
func (c *Client) watchOn(ctx context.Context, ep *endpoint, r *kvdv1.WatchRequest, cur *watchCursor, out chan<- WatchResponse) (delivered bool, err error) {
	open := func(ctx context.Context) (*connect.ServerStreamForClient[kvdv1.WatchResponse], error) {
		return ep.kv.Watch(ctx, connect.NewRequest(r))
	}
	got := 0 // events of revision cur.next this stream sent
	err = receive(ctx, ep.name, watchSilence(r), open, func(ctx context.Context, m *kvdv1.WatchResponse) error {
		delivered = true
		if m.Revision+1 < cur.next && len(m.Events) == 0 {
			return nil // progress behind what we saw (a node that lags, after a failover)
		}
		resp := WatchResponse{Revision: m.Revision, Events: make([]WatchEvent, 0, len(m.Events))}
		for _, e := range m.Events {
			if e.ModRevision > cur.next {
				// Events come in revision order: every earlier one is complete.
				cur.next, cur.seen, got = e.ModRevision, 0, 0
			}
			if e.ModRevision < cur.next {
				continue // never twice (a server cannot send these; belt and braces)
			}
			if got++; got <= cur.seen {
				continue // delivered before the last stream broke
			}
			cur.seen++
			resp.Events = append(resp.Events, watchEventFromProto(e))
		}
		if m.Revision+1 > cur.next {
			cur.next, cur.seen, got = m.Revision+1, 0, 0
		}
		select {
		case out <- resp:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	return delivered, err
}

// watchSilence is how long a watch waits for a message before it takes
// the node for lost: streamSilence, or three progress intervals when the
// watch asked for rarer progress (the node's ticks may leave up to two
// intervals between messages).
func watchSilence(r *kvdv1.WatchRequest) time.Duration {
	progress := time.Second // the node's default
	if r.ProgressIntervalMs > 0 {
		progress = time.Duration(r.ProgressIntervalMs) * time.Millisecond
	}
	return max(streamSilence, 3*progress)
}

// watchVerdict says what a failed watch stream means. OutOfRange: the
// node's history starts after the revision asked for, and another node
// may still hold it.
func watchVerdict(err error) (verdict, error) {
	switch connect.CodeOf(err) {
	case connect.CodeOutOfRange:
		return notHere, err
	case connect.CodeInvalidArgument, connect.CodePermissionDenied, connect.CodeUnauthenticated, connect.CodeUnimplemented:
		return endStream, err
	}
	if tlsProblem(err) != "" {
		return endStream, errors.Join(ErrTLS, err)
	}
	return nodeFailed, nil
}

// olderFloor returns of two OutOfRange answers the one that names the
// older revision still available (a on a tie, or when b names none; b
// when a is nil).
func olderFloor(a, b error) error {
	if a == nil {
		return b
	}
	fa, okA := OldestRevision(a)
	fb, okB := OldestRevision(b)
	if okB && (!okA || fb < fa) {
		return b
	}
	return a
}

// OldestRevision returns the oldest revision still available from a
// Watch's ErrCompacted, when the server attached it (a kvd.v1.Compacted
// error detail): where to start a watch that must not miss a change.
func OldestRevision(err error) (uint64, bool) {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeOutOfRange {
		return 0, false
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if c, ok := v.(*kvdv1.Compacted); ok {
				return c.GetOldestRevision(), true
			}
		}
	}
	return 0, false
}

func watchEventFromProto(e *kvdv1.WatchEvent) WatchEvent {
	w := WatchEvent{Type: EventPut, Key: e.Key, Value: e.Value, ModRevision: e.ModRevision, Created: e.Created}
	if e.Type == kvdv1.EventType_EVENT_TYPE_DELETE {
		w.Type, w.Value = EventDelete, nil
	} else if w.Value == nil {
		w.Value = []byte{}
	}
	return w
}
