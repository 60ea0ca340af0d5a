package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
)

// A node whose history starts after the revision asked for (it joined
// from a snapshot) answers OutOfRange; the watch takes the revisions from
// another endpoint that still holds them, each endpoint tried once. Once
// it delivered, the record of endpoints tried starts over: when the
// serving node fails, the watch resumes on the first endpoint, whose
// history now reaches.
func TestWatchTakesOldRevisionsFromAnotherEndpoint(t *testing.T) {
	h := newHistory(5)
	a, b, full := startWatchNode(t, h), startWatchNode(t, h), startWatchNode(t, h)
	a.setFloor(4)
	b.setFloor(3)
	c := newTestClient(t, Config{Endpoints: []string{a.addr, b.addr, full.addr}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := c.Watch(ctx, []byte("k/"), WithPrefix(), WithRevision(1), WithProgress(50*time.Millisecond))
	revs := watchUntil(t, w, 5)
	full.setDown()
	for range 5 {
		h.put()
	}
	revs = append(revs, watchUntil(t, w, 10)...)
	if want := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}; !slices.Equal(revs, want) {
		t.Fatalf("revisions %v, want %v", revs, want)
	}
	for _, tc := range []struct {
		name string
		n    *watchNode
		want []uint64
	}{{"a", a, []uint64{1, 6}}, {"b", b, []uint64{1}}, {"full", full, []uint64{1}}} {
		if got := tc.n.started(); !slices.Equal(got, tc.want) {
			t.Errorf("node %s served watches from %v, want %v", tc.name, got, tc.want)
		}
	}
}

// When no endpoint holds the revision (each answered OutOfRange, or
// failed otherwise), the watch ends with ErrCompacted after one try of
// each, naming the oldest revision still available on any of them.
func TestWatchCompactedOnEveryEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name string
		down bool // a third endpoint that refuses connections
	}{{"every node answers OutOfRange", false}, {"one node is down", true}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory(8)
			a, b := startWatchNode(t, h), startWatchNode(t, h)
			a.setFloor(6)
			b.setFloor(4)
			eps := []string{a.addr, b.addr}
			if tc.down {
				eps = []string{a.addr, downAddr(t), b.addr}
			}
			c := newTestClient(t, Config{Endpoints: eps})
			start := time.Now()
			var r WatchResponse
			select {
			case r = <-c.Watch(context.Background(), []byte("k/"), WithPrefix(), WithRevision(2)):
			case <-time.After(5 * time.Second):
				t.Fatal("no final message after 5s")
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("the watch took %s to end", took)
			}
			if !errors.Is(r.Err, ErrCompacted) || !strings.Contains(r.Err.Error(), "oldest revision still available is 4 ") {
				t.Fatalf("watch ended with %v; want ErrCompacted naming revision 4, the oldest any node holds", r.Err)
			}
			var e *Error
			if !errors.As(r.Err, &e) || !slices.Equal(e.Endpoints, eps) {
				t.Errorf("endpoints tried: %+v, want %v", e, eps)
			}
			if !slices.Equal(a.started(), []uint64{2}) || !slices.Equal(b.started(), []uint64{2}) {
				t.Errorf("nodes asked from %v and %v, want once each from 2", a.started(), b.started())
			}
		})
	}
}

func TestWatchVerdict(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want verdict
	}{
		{connect.NewError(connect.CodeOutOfRange, errors.New("revision 1 is compacted")), notHere},
		{connect.NewError(connect.CodeUnavailable, errors.New("not ready")), nodeFailed},
		{errors.New("127.0.0.1:1 ended the stream"), nodeFailed},
		{connect.NewError(connect.CodeInvalidArgument, errors.New("bad range")), endStream},
		{connect.NewError(connect.CodePermissionDenied, errors.New("no")), endStream},
		{connect.NewError(connect.CodeUnimplemented, errors.New("no watch")), endStream},
	} {
		if got, _ := watchVerdict(tc.err); got != tc.want {
			t.Errorf("watchVerdict(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestOlderFloor(t *testing.T) {
	floor := func(n uint64) error { return compactedError(1, n) }
	f7, f12, f30, none := floor(7), floor(12), floor(30), connect.NewError(connect.CodeOutOfRange, errors.New("compacted"))
	for _, tc := range []struct {
		name       string
		a, b, want error
	}{
		{"first", nil, f12, f12},
		{"older", f12, f7, f7},
		{"newer", f12, f30, f12},
		{"tie", f12, floor(12), f12},
		{"b names none", f12, none, f12},
		{"a names none", none, f7, f7},
		{"neither", none, none, none},
	} {
		if got := olderFloor(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: olderFloor(%v, %v) = %v, want %v", tc.name, tc.a, tc.b, got, tc.want)
		}
	}
	if n, ok := OldestRevision(fmt.Errorf("wrapped: %w", f30)); !ok || n != 30 {
		t.Errorf("OldestRevision(wrapped) = %d, %t; want 30", n, ok)
	}
	if _, ok := OldestRevision(errors.New("the oldest revision still available is 5")); ok {
		t.Error("OldestRevision read a number from a message: only the detail counts")
	}
}
