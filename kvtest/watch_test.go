package kvtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvd-project/kvd/client"
	"github.com/kvd-project/kvd/server"
)

func newClient(t *testing.T, endpoints ...string) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// next waits for the next message with events (skipping progress).
func nextEvents(t *testing.T, ch <-chan client.WatchResponse) client.WatchResponse {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				t.Fatal("watch channel closed")
			}
			if r.Err != nil {
				t.Fatalf("watch ended: %v", r.Err)
			}
			if len(r.Events) > 0 {
				return r
			}
		case <-timeout:
			t.Fatal("no watch event within 10s")
		}
	}
}

func describeEvents(es []client.WatchEvent) string {
	var parts []string
	for _, e := range es {
		s := fmt.Sprintf("%s %s", e.Type, e.Key)
		if e.Type == client.EventPut {
			s += "=" + string(e.Value)
		}
		if e.Created {
			s += "+"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func TestWatchDeliversChangesInOrder(t *testing.T) {
	c := NewCluster(t, 3)
	c.WaitReady(30 * time.Second)
	cl := newClient(t, c.Endpoint(1)) // a follower serves it
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prefix := cl.Watch(ctx, []byte("app/"), client.WithPrefix())
	one := cl.Watch(ctx, []byte("app/a"))
	// The first message says where "now" is: changes after it are sent.
	if r := <-prefix; r.Err != nil || len(r.Events) != 0 {
		t.Fatalf("first message: %+v", r)
	}
	<-one
	r1 := c.Put(0, "app/a", "1")
	c.Put(0, "other", "x")
	r2 := c.Put(2, "app/b", "2")
	r3 := c.Put(0, "app/a", "3")
	if _, err := cl.Delete(ctx, []byte("app/b")); err != nil {
		t.Fatal(err)
	}
	var got []client.WatchEvent
	for len(got) < 4 {
		got = append(got, nextEvents(t, prefix).Events...)
	}
	if d := describeEvents(got); d != "put app/a=1+, put app/b=2+, put app/a=3, delete app/b" {
		t.Fatalf("prefix watch: %s", d)
	}
	if got[0].ModRevision != r1 || got[1].ModRevision != r2 || got[2].ModRevision != r3 || got[3].ModRevision <= r3 {
		t.Fatalf("revisions %d %d %d %d, puts acknowledged at %d %d %d", got[0].ModRevision, got[1].ModRevision, got[2].ModRevision, got[3].ModRevision, r1, r2, r3)
	}
	var mine []client.WatchEvent
	for len(mine) < 2 {
		mine = append(mine, nextEvents(t, one).Events...)
	}
	if d := describeEvents(mine); d != "put app/a=1+, put app/a=3" {
		t.Fatalf("key watch: %s", d)
	}
	// A watch from a past revision replays the history.
	past := cl.Watch(ctx, []byte("app/a"), client.WithRevision(r1))
	var replay []client.WatchEvent
	for len(replay) < 2 {
		replay = append(replay, nextEvents(t, past).Events...)
	}
	if d := describeEvents(replay); d != "put app/a=1+, put app/a=3" {
		t.Fatalf("replay from %d: %s", r1, d)
	}
	// Idle: progress messages carry the applied revision.
	idle := cl.Watch(ctx, []byte("quiet"), client.WithProgress(100*time.Millisecond))
	deadline := time.After(5 * time.Second)
	for seen := 0; seen < 3; {
		select {
		case r := <-idle:
			if r.Err != nil || r.Revision < got[3].ModRevision {
				t.Fatalf("progress %+v, want revision >= %d", r, got[3].ModRevision)
			}
			seen++
		case <-deadline:
			t.Fatal("no progress messages from an idle watch")
		}
	}
}

// A watcher whose node dies resumes on another from the last revision it
// saw: every acknowledged put arrives exactly once, in order.
func TestWatchResumesAfterNodeDies(t *testing.T) {
	c := NewCluster(t, 3)
	c.WaitReady(30 * time.Second)
	cl := newClient(t, c.Endpoint(2), c.Endpoint(0), c.Endpoint(1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := cl.Watch(ctx, []byte("k/"), client.WithPrefix(), client.WithRevision(1))
	writer := newClient(t, c.Endpoint(0), c.Endpoint(1))
	var acked []uint64
	put := func(i int) {
		r, err := writer.Put(ctx, []byte(fmt.Sprintf("k/%03d", i)), []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, r.Revision)
	}
	for i := 0; i < 20; i++ {
		put(i)
	}
	if c.Leader() == 2 {
		if err := c.Server(2).Node().TransferLeader(c.Server(0).Node().ID()); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop(2)
	for i := 20; i < 40; i++ {
		put(i)
	}
	var revs []uint64
	for len(revs) < len(acked) {
		for _, e := range nextEvents(t, w).Events {
			revs = append(revs, e.ModRevision)
		}
	}
	if fmt.Sprint(revs) != fmt.Sprint(acked) {
		t.Fatalf("events at %v\nputs acknowledged at %v", revs, acked)
	}
}

func TestWatchBelowTheHistoryIsOutOfRange(t *testing.T) {
	c := NewCluster(t, 1, func(cfg *server.Config) { cfg.Node.WatchHistory = 10 })
	c.WaitReady(30 * time.Second)
	for i := 0; i < 200; i++ {
		c.Put(0, "k", fmt.Sprint(i))
	}
	for _, protocol := range []client.Protocol{client.ProtocolConnect, client.ProtocolGRPC} {
		cl, err := client.New(client.Config{Endpoints: []string{c.Endpoint(0)}, Protocol: protocol})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		r := <-cl.Watch(context.Background(), []byte("k"), client.WithRevision(1))
		if !errors.Is(r.Err, client.ErrCompacted) || !strings.Contains(r.Err.Error(), "oldest revision still available") {
			t.Fatalf("%s: watch from revision 1 with 10 kept: %v", protocol, r.Err)
		}
		// The floor travels as a detail too (through grpc-go's server for gRPC).
		oldest, ok := client.OldestRevision(r.Err)
		if !ok || oldest <= 1 || !strings.Contains(r.Err.Error(), fmt.Sprint("available is ", oldest)) {
			t.Fatalf("%s: OldestRevision = %d, %t; error %v", protocol, oldest, ok, r.Err)
		}
	}
}

// Open watches (and member watches) end when their server stops, instead
// of holding the graceful shutdown until its deadline.
func TestStopEndsWatches(t *testing.T) {
	c := NewCluster(t, 1)
	c.WaitReady(30 * time.Second)
	cl := newClient(t, c.Endpoint(0))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := cl.Watch(ctx, []byte("k"))
	if r := <-w; r.Err != nil {
		t.Fatal(r.Err)
	}
	m := cl.WatchMembers(ctx)
	<-m
	start := time.Now()
	c.Stop(0)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("stopping a node with open watches took %v", d)
	}
}
