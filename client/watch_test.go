package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// history is a change history that fake watch nodes share, as a
// cluster's replicas do: the i-th put has revision i.
type history struct {
	mu     sync.Mutex
	events []*kvdv1.WatchEvent
	grew   chan struct{} // closed (and replaced) by the next put
}

func newHistory(puts int) *history {
	h := &history{grew: make(chan struct{})}
	for range puts {
		h.put()
	}
	return h
}

func (h *history) put() {
	h.mu.Lock()
	defer h.mu.Unlock()
	rev := uint64(len(h.events) + 1)
	h.events = append(h.events, &kvdv1.WatchEvent{Type: kvdv1.EventType_EVENT_TYPE_PUT,
		Key: fmt.Appendf(nil, "k/%03d", rev), Value: []byte("v"), ModRevision: rev, Created: true})
	close(h.grew)
	h.grew = make(chan struct{})
}

// since returns the events from revision from on, the last revision, and
// a channel the next put closes.
func (h *history) since(from uint64) ([]*kvdv1.WatchEvent, uint64, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	last := uint64(len(h.events))
	return h.events[min(max(from, 1)-1, last):], last, h.grew
}

// watchNode serves Watch from a shared history (every key matches): one
// message per event, progress when idle.
type watchNode struct {
	kvdv1connect.UnimplementedKVHandler
	h    *history
	addr string

	mu     sync.Mutex
	starts []uint64 // the start revision of each Watch served
	floor  uint64   // the oldest revision it holds: older starts get OutOfRange, like kvd's
	down   bool     // ends its streams with Unavailable, like a kvd that stopped being ready
}

// setFloor makes the node answer a Watch from below floor with
// OutOfRange, as a node that joined from a snapshot does.
func (n *watchNode) setFloor(floor uint64) {
	n.mu.Lock()
	n.floor = floor
	n.mu.Unlock()
}

// setDown makes the node end every stream with Unavailable (at its next
// message or progress tick) and refuse new ones.
func (n *watchNode) setDown() {
	n.mu.Lock()
	n.down = true
	n.mu.Unlock()
}

func startWatchNode(t *testing.T, h *history) *watchNode {
	t.Helper()
	n := &watchNode{h: h}
	path, handler := kvdv1connect.NewKVHandler(n)
	n.addr = serveH2C(t, path, handler)
	return n
}

// serveH2C serves a handler over HTTP/1.1 and h2c, like kvd (the client's
// default transport is h2c), until the test ends; it returns the address.
func serveH2C(t *testing.T, path string, h http.Handler) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func (n *watchNode) started() []uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.starts)
}

func (n *watchNode) Watch(ctx context.Context, req *connect.Request[kvdv1.WatchRequest], s *connect.ServerStream[kvdv1.WatchResponse]) error {
	from := req.Msg.StartRevision
	n.mu.Lock()
	n.starts = append(n.starts, from)
	floor := n.floor
	n.mu.Unlock()
	if from != 0 && from < floor {
		return compactedError(from, floor)
	}
	progress := time.Second
	if ms := req.Msg.ProgressIntervalMs; ms > 0 {
		progress = time.Duration(ms) * time.Millisecond
	}
	tick := time.NewTicker(progress)
	defer tick.Stop()
	for {
		n.mu.Lock()
		down := n.down
		n.mu.Unlock()
		if down {
			return connect.NewError(connect.CodeUnavailable, errors.New("watch: this node is not ready"))
		}
		events, last, grew := n.h.since(from)
		if from == 0 {
			events = nil // from now
		}
		for _, e := range events {
			if err := s.Send(&kvdv1.WatchResponse{Revision: e.ModRevision, Events: []*kvdv1.WatchEvent{e}}); err != nil {
				return err
			}
		}
		if len(events) == 0 {
			if err := s.Send(&kvdv1.WatchResponse{Revision: last}); err != nil {
				return err
			}
		}
		from = last + 1
		select {
		case <-ctx.Done():
			return nil
		case <-grew:
		case <-tick.C:
		}
	}
}

// stallProxy forwards TCP connections to a node until stall; from then on
// it reads and drops every byte both ways and keeps the connections open:
// the node behind it looks hung (a partition, a stopped process), and
// nothing closes the connection.
type stallProxy struct {
	ln      net.Listener
	target  string
	stalled atomic.Bool
	wg      sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  []net.Conn
}

func startStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) addr() string { return p.ln.Addr().String() }

func (p *stallProxy) stall() { p.stalled.Store(true) }

func (p *stallProxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		if !p.track(in, out) {
			return
		}
		p.wg.Add(2)
		go p.copy(out, in)
		go p.copy(in, out)
	}
}

// track keeps conns for close; false (conns closed) once closed.
func (p *stallProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	p.conns = append(p.conns, conns...)
	return true
}

// copy forwards src to dst (drops it while stalled); when either side
// ends, both are closed.
func (p *stallProxy) copy(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.stalled.Load() {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// watchUntil collects the events of w up to revision last.
func watchUntil(t *testing.T, w <-chan WatchResponse, last uint64) []uint64 {
	t.Helper()
	var revs []uint64
	timeout := time.After(5 * time.Second)
	for len(revs) == 0 || revs[len(revs)-1] < last {
		select {
		case r, ok := <-w:
			if !ok || r.Err != nil {
				t.Fatalf("watch ended (%v) after revisions %v", r.Err, revs)
			}
			for _, e := range r.Events {
				revs = append(revs, e.ModRevision)
			}
		case <-timeout:
			t.Fatalf("revisions %v after 5s, want up to %d", revs, last)
		}
	}
	return revs
}

// A node that stops answering without closing the connection is left
// after streamSilence; the watch resumes on the next endpoint from the
// revision after the last delivered: every event once, in order. Over
// HTTP/1.1 (Unary, gRPC-Web) nothing else would notice.
func TestWatchLeavesASilentNode(t *testing.T) {
	defer func(d time.Duration) { streamSilence = d }(streamSilence)
	streamSilence = 300 * time.Millisecond
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"connect h2c", Config{}},
		{"connect unary HTTP/1.1", Config{Unary: true}},
		{"grpc-web", Config{Protocol: ProtocolGRPCWeb}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory(5)
			hung, other := startWatchNode(t, h), startWatchNode(t, h)
			p := startStallProxy(t, hung.addr)
			cfg := tc.cfg
			cfg.Endpoints = []string{p.addr(), other.addr}
			c := newTestClient(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := c.Watch(ctx, []byte("k/"), WithPrefix(), WithRevision(1), WithProgress(50*time.Millisecond))
			revs := watchUntil(t, w, 5)
			p.stall()
			for range 5 {
				h.put()
			}
			revs = append(revs, watchUntil(t, w, 10)...)
			if want := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}; !slices.Equal(revs, want) {
				t.Fatalf("revisions %v, want %v", revs, want)
			}
			if got := hung.started(); !slices.Equal(got, []uint64{1}) {
				t.Errorf("hung node served watches from %v, want [1]", got)
			}
			if got := other.started(); !slices.Equal(got, []uint64{6}) {
				t.Errorf("other node served watches from %v, want [6]", got)
			}
		})
	}
}

func TestWatchSilence(t *testing.T) {
	for _, tc := range []struct {
		progressMs uint32
		want       time.Duration
	}{
		{0, streamSilence},         // the node's 1 s
		{100, streamSilence},       // more often: the floor
		{10_000, 30 * time.Second}, // rarer: three intervals
		{60_000, 180 * time.Second},
	} {
		if got := watchSilence(&kvdv1.WatchRequest{ProgressIntervalMs: tc.progressMs}); got != tc.want {
			t.Errorf("progress %d ms: silence %s, want %s", tc.progressMs, got, tc.want)
		}
	}
}

// waitFull waits until ch holds as many messages as it can.
func waitFull[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(ch) < cap(ch); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("channel holds %d of %d after 5s", len(ch), cap(ch))
		}
	}
}

// watchLoops lists the goroutines running a watch's loop.
func watchLoops() []string {
	buf := make([]byte, 1<<16)
	for len(buf) == runtime.Stack(buf, true) {
		buf = make([]byte, 2*len(buf))
	}
	var loops []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "client.(*Client).watch") {
			loops = append(loops, g)
		}
	}
	return loops
}

// A caller that cancels and stops reading while the channel is full does
// not keep the goroutine of Watch or WatchMembers waiting to send the
// final message (TestMain's goleak would find it too, naming no test).
func TestWatchEndsWhenTheCallerStopsReading(t *testing.T) {
	kv := startWatchNode(t, newHistory(40))
	members := startSilentNode(t, &silentNode{id: 1, lists: 40})
	watcher := newTestClient(t, Config{Endpoints: []string{kv.addr}})
	memberWatcher := newTestClient(t, Config{Endpoints: []string{members}})
	ctx, cancel := context.WithCancel(context.Background())
	w := watcher.Watch(ctx, []byte("k/"), WithPrefix(), WithRevision(1))
	m := memberWatcher.WatchMembers(ctx)
	waitFull(t, w)
	waitFull(t, m)
	cancel() // and read no more
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		loops := watchLoops()
		if len(loops) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after cancel, %d watch goroutines still run:\n%s", len(loops), strings.Join(loops, "\n\n"))
		}
	}
}

// compactedError is kvd's OutOfRange for a watch from below floor, with
// its kvd.v1.Compacted detail (rpc/watch.go).
func compactedError(from, floor uint64) *connect.Error {
	e := connect.NewError(connect.CodeOutOfRange, fmt.Errorf(
		"revision %d is compacted: the oldest revision still available is %d (start there, or at 0 for changes from now)", from, floor))
	if d, err := connect.NewErrorDetail(&kvdv1.Compacted{OldestRevision: floor}); err == nil {
		e.AddDetail(d)
	}
	return e
}
