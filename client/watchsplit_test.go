package client

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// scriptNode answers its n-th Watch with script[n]'s messages, then ends
// that stream with Unavailable (the last script's stream stays open).
type scriptNode struct {
	kvdv1connect.UnimplementedKVHandler
	script [][]*kvdv1.WatchResponse

	mu     sync.Mutex
	starts []uint64
}

func (n *scriptNode) Watch(ctx context.Context, req *connect.Request[kvdv1.WatchRequest], s *connect.ServerStream[kvdv1.WatchResponse]) error {
	n.mu.Lock()
	call := len(n.starts)
	n.starts = append(n.starts, req.Msg.StartRevision)
	n.mu.Unlock()
	if call >= len(n.script) {
		return connect.NewError(connect.CodeUnavailable, errors.New("no more scripts"))
	}
	for _, m := range n.script[call] {
		if err := s.Send(m); err != nil {
			return err
		}
	}
	if call < len(n.script)-1 {
		return connect.NewError(connect.CodeUnavailable, errors.New("watch: this node is not ready"))
	}
	<-ctx.Done()
	return nil
}

// A revision too large for one message comes in several, each but the
// last naming the revision before it. A stream that breaks inside such a
// revision resumes at it, and the new node sends it from its first event
// (cut into messages its own way): the watch skips the events it already
// delivered and delivers the rest, every event once.
func TestWatchResumesInsideARevision(t *testing.T) {
	ev := func(key string, rev uint64) *kvdv1.WatchEvent {
		return &kvdv1.WatchEvent{Type: kvdv1.EventType_EVENT_TYPE_PUT, Key: []byte(key), Value: []byte("v"), ModRevision: rev}
	}
	msg := func(rev uint64, events ...*kvdv1.WatchEvent) *kvdv1.WatchResponse {
		return &kvdv1.WatchResponse{Revision: rev, Events: events}
	}
	// Revision 1: a, b; 2: c, d, e; 3: f.
	a, b, c, d, e, f := ev("a", 1), ev("b", 1), ev("c", 2), ev("d", 2), ev("e", 2), ev("f", 3)
	n := &scriptNode{script: [][]*kvdv1.WatchResponse{
		{msg(0, a), msg(1, b, c)},    // breaks inside revision 2, c delivered
		{msg(1, c), msg(1, d)},       // from 2: c again (skipped), d; breaks inside 2 again
		{msg(1, c, d, e), msg(3, f)}, // from 2: c and d again (skipped), e, f
	}}
	path, h := kvdv1connect.NewKVHandler(n)
	cl := newTestClient(t, Config{Endpoints: []string{serveH2C(t, path, h), serveH2C(t, path, h)}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := cl.Watch(ctx, []byte(""), WithRange([]byte{0}), WithRevision(1))
	var keys []string
	timeout := time.After(10 * time.Second)
	for len(keys) < 6 {
		select {
		case r := <-w:
			if r.Err != nil {
				t.Fatalf("watch ended (%v) after %v", r.Err, keys)
			}
			for _, e := range r.Events {
				keys = append(keys, string(e.Key))
			}
		case <-timeout:
			t.Fatalf("events %v after 10s, want a to f", keys)
		}
	}
	if want := []string{"a", "b", "c", "d", "e", "f"}; !slices.Equal(keys, want) {
		t.Fatalf("events %v, want %v (each once)", keys, want)
	}
	n.mu.Lock()
	starts := slices.Clone(n.starts)
	n.mu.Unlock()
	if want := []uint64{1, 2, 2}; !slices.Equal(starts, want) {
		t.Fatalf("watches started at %v, want %v", starts, want)
	}
	select {
	case r := <-w:
		t.Fatalf("a message after f: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
}
