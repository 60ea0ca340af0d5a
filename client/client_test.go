package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

func TestFailoverAcrossThreeEndpoints(t *testing.T) {
	down := downAddr(t)
	unavail := newFakeNode(t, 2)
	unavail.setFail(always(connect.CodeUnavailable))
	good := newFakeNode(t, 3)
	c := newTestClient(t, Config{Endpoints: []string{down, unavail.srv.URL, good.addr}})
	ctx := context.Background()

	put, err := c.Put(ctx, []byte("k"), []byte("v"))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if put.Revision != 1 {
		t.Errorf("revision = %d, want 1", put.Revision)
	}
	if got := unavail.Calls("Put"); got != 1 {
		t.Errorf("unavailable node saw %d puts, want 1", got)
	}
	if got := good.Calls("Put"); got != 1 {
		t.Errorf("good node saw %d puts, want 1 (a write must be applied once)", got)
	}
	if got := c.CurrentEndpoint(); got != good.addr {
		t.Errorf("current endpoint = %q, want %q (sticks to the one that answered)", got, good.addr)
	}
	// The next call goes straight to the good node.
	if _, err := c.Get(ctx, []byte("k")); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got := unavail.Calls("Get"); got != 0 {
		t.Errorf("unavailable node saw %d gets after failover, want 0", got)
	}
}

func TestFailoverWrapsAround(t *testing.T) {
	good := newFakeNode(t, 1)
	bad := newFakeNode(t, 2)
	bad.setFail(always(connect.CodeUnavailable))
	c := newTestClient(t, Config{Endpoints: []string{good.addr, bad.addr}})
	c.cur.Store(1) // start at the bad node
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatalf("Status: %v", err)
	}
	if c.CurrentEndpoint() != good.addr {
		t.Errorf("current endpoint = %q, want %q", c.CurrentEndpoint(), good.addr)
	}
}

func TestNoEndpointReachable(t *testing.T) {
	eps := []string{downAddr(t), downAddr(t), downAddr(t)}
	c := newTestClient(t, Config{Endpoints: eps, MaxAttempts: 4})
	_, err := c.Put(context.Background(), []byte("k"), []byte("v"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if OutcomeUnknown(err) {
		t.Error("OutcomeUnknown = true for a write that never left the process")
	}
	if !IsTemporary(err) {
		t.Error("IsTemporary = false, want true")
	}
	want := "no endpoint reachable: tried " + strings.Join(eps, ",") + "; is kvd running? check --endpoints"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("message %q\ndoes not contain %q", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Attempts != 4 {
		t.Errorf("attempts = %+v, want 4", e)
	}
	if code := connect.CodeOf(err); code != connect.CodeUnavailable {
		t.Errorf("connect.CodeOf = %v, want unavailable", code)
	}
}

// A write whose outcome is unknown must not be retried, whatever made it
// unknown; reads with the same failure are retried on the next endpoint.
func TestWritesNotRetriedWhenOutcomeUnknown(t *testing.T) {
	setups := map[string]func(n *fakeNode){
		"attempt timeout": func(n *fakeNode) { n.setDelay(5 * time.Second) },
		"server DeadlineExceeded": func(n *fakeNode) {
			n.setFail(always(connect.CodeDeadlineExceeded))
		},
		"server Unknown":     func(n *fakeNode) { n.setFail(always(connect.CodeUnknown)) },
		"server Internal":    func(n *fakeNode) { n.setFail(always(connect.CodeInternal)) },
		"connection dropped": func(n *fakeNode) { n.setHijack(true) },
	}
	writes := map[string]func(c *Client) error{
		"Put": func(c *Client) error {
			_, err := c.Put(context.Background(), []byte("k"), []byte("v"), IfModRevision(0))
			return err
		},
		"Delete": func(c *Client) error {
			_, err := c.Delete(context.Background(), []byte("k"))
			return err
		},
		"Txn": func(c *Client) error {
			_, err := c.Txn(context.Background(), nil, []Op{OpPut([]byte("k"), []byte("v"))})
			return err
		},
	}
	for _, unary := range []bool{false, true} {
		for setupName, setup := range setups {
			if setupName == "connection dropped" && !unary {
				continue // HTTP/1.1 only; the stream's break: TestStreamBrokenAfterSend
			}
			for proc, write := range writes {
				t.Run(fmt.Sprintf("unary=%t/%s/%s", unary, setupName, proc), func(t *testing.T) {
					t.Parallel()
					first, second := newFakeNode(t, 1), newFakeNode(t, 2)
					setup(first)
					c := newTestClient(t, Config{Endpoints: []string{first.addr, second.addr},
						RequestTimeout: 500 * time.Millisecond, Unary: unary})
					err := write(c)
					if err == nil {
						t.Fatal("write succeeded, want an error")
					}
					if !OutcomeUnknown(err) {
						t.Errorf("OutcomeUnknown(%v) = false, want true", err)
					}
					if got := first.Calls(proc); got != 1 {
						t.Errorf("first node saw %d %s calls, want exactly 1", got, proc)
					}
					if got := second.Calls(proc); got != 0 {
						t.Errorf("second node saw %d %s calls, want 0 (no retry)", got, proc)
					}
					if !strings.Contains(err.Error(), "outcome unknown") {
						t.Errorf("message %q does not say the outcome is unknown", err)
					}
				})
			}
		}
	}
}

func TestReadsRetriedAfterTimeoutOrDrop(t *testing.T) {
	setups := map[string]func(n *fakeNode){
		"attempt timeout":         func(n *fakeNode) { n.setDelay(5 * time.Second) },
		"server DeadlineExceeded": func(n *fakeNode) { n.setFail(always(connect.CodeDeadlineExceeded)) },
		"connection dropped":      func(n *fakeNode) { n.setHijack(true) },
	}
	for name, setup := range setups {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			first, second := newFakeNode(t, 1), newFakeNode(t, 2)
			setup(first)
			c := newTestClient(t, Config{Endpoints: []string{first.addr, second.addr},
				RequestTimeout: 500 * time.Millisecond})
			if _, err := c.Members(context.Background()); err != nil {
				t.Fatalf("Members: %v", err)
			}
			if first.Calls("Members") != 1 || second.Calls("Members") != 1 {
				t.Errorf("calls = %d, %d; want 1, 1", first.Calls("Members"), second.Calls("Members"))
			}
		})
	}
}

func TestDefiniteErrorsNotRetried(t *testing.T) {
	first, second := newFakeNode(t, 1), newFakeNode(t, 2)
	first.setFail(always(connect.CodeInvalidArgument))
	c := newTestClient(t, Config{Endpoints: []string{first.addr, second.addr}})
	_, err := c.Get(context.Background(), []byte("k"))
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("err = %v, want ErrInvalidArgument", err)
	}
	if first.Calls("Get") != 1 || second.Calls("Get") != 0 {
		t.Errorf("calls = %d, %d; want 1, 0", first.Calls("Get"), second.Calls("Get"))
	}
	if c.CurrentEndpoint() != first.addr {
		t.Errorf("a definite answer moved the client to %q", c.CurrentEndpoint())
	}
}

func TestMaxAttemptsBoundsRetries(t *testing.T) {
	nodes := []*fakeNode{newFakeNode(t, 1), newFakeNode(t, 2), newFakeNode(t, 3)}
	var eps []string
	for _, n := range nodes {
		n.setFail(always(connect.CodeUnavailable))
		eps = append(eps, n.addr)
	}
	c := newTestClient(t, Config{Endpoints: eps, MaxAttempts: 5})
	_, err := c.Put(context.Background(), []byte("k"), []byte("v"))
	if !errors.Is(err, ErrUnavailable) || OutcomeUnknown(err) {
		t.Fatalf("err = %v, want ErrUnavailable with a known outcome", err)
	}
	total := 0
	for _, n := range nodes {
		total += n.Calls("Put")
	}
	if total != 5 {
		t.Errorf("%d attempts, want MaxAttempts = 5", total)
	}
	// Round robin: 2, 2, 1.
	if got := []int{nodes[0].Calls("Put"), nodes[1].Calls("Put"), nodes[2].Calls("Put")}; fmt.Sprint(got) != "[2 2 1]" {
		t.Errorf("per-node attempts = %v, want [2 2 1]", got)
	}
	for _, want := range []string{"cluster unavailable after 5 attempt(s)", strings.Join(eps, ",")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not contain %q", err, want)
		}
	}
}

func TestBackoffBoundedByContext(t *testing.T) {
	n := newFakeNode(t, 1)
	n.setFail(always(connect.CodeUnavailable))
	c := newTestClient(t, Config{Endpoints: []string{n.addr}, BackoffBase: 10 * time.Second,
		BackoffMax: 10 * time.Second, MaxAttempts: 100})

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Get(ctx, []byte("k"))
		if el := time.Since(start); el > time.Second {
			t.Errorf("Get took %v: it slept although the backoff exceeds the deadline", el)
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("err = %v, want the last attempt's ErrUnavailable", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		// Cancel during the backoff, not during the first attempt (under
		// -race on a loaded machine an attempt can outlast a fixed 100 ms
		// and then "canceled" is the right answer): once the server has
		// answered the first call, wait a little and cancel.
		before := n.Calls("Get")
		go func() {
			for i := 0; i < 500 && n.Calls("Get") == before; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			cancel()
		}()
		start := time.Now()
		_, err := c.Get(ctx, []byte("k"))
		if el := time.Since(start); el > 7*time.Second {
			t.Errorf("Get took %v after cancel", el)
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("err = %v, want ErrUnavailable", err)
		}
	})
	t.Run("already done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		before := n.Calls("Get")
		_, err := c.Get(ctx, []byte("k"))
		if connect.CodeOf(err) != connect.CodeCanceled || !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want canceled", err)
		}
		if n.Calls("Get") != before {
			t.Error("a call with a done ctx reached the server")
		}
	})
}

func TestCallerDeadlineOnWriteIsOutcomeUnknown(t *testing.T) {
	n := newFakeNode(t, 1)
	n.setDelay(time.Second)
	c := newTestClient(t, Config{Endpoints: []string{n.addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Put(ctx, []byte("k"), []byte("v"))
	if !OutcomeUnknown(err) || connect.CodeOf(err) != connect.CodeDeadlineExceeded {
		t.Errorf("err = %v (code %v), want outcome unknown, deadline_exceeded", err, connect.CodeOf(err))
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(err, context.DeadlineExceeded) = false for %v", err)
	}
}

func TestConcurrentFailover(t *testing.T) {
	good := newFakeNode(t, 2)
	c := newTestClient(t, Config{Endpoints: []string{downAddr(t), good.addr}})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			key := []byte(fmt.Sprintf("k%d", i))
			if _, err := c.Put(context.Background(), key, []byte("v")); err != nil {
				errs <- err
				return
			}
			if _, err := c.Get(context.Background(), key); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c.CurrentEndpoint() != good.addr {
		t.Errorf("current endpoint = %q, want %q", c.CurrentEndpoint(), good.addr)
	}
}

func TestProtocols(t *testing.T) {
	for _, p := range []Protocol{ProtocolConnect, ProtocolGRPC, ProtocolGRPCWeb} {
		t.Run(string(p), func(t *testing.T) {
			n := newFakeNode(t, 1)
			c := newTestClient(t, Config{Endpoints: []string{downAddr(t), n.srv.URL}, Protocol: p})
			ctx := context.Background()
			if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
				t.Fatalf("Put: %v", err)
			}
			kv, err := c.Get(ctx, []byte("k"))
			if err != nil || string(kv.Value) != "v" {
				t.Fatalf("Get = %v, %v", kv, err)
			}
			if _, err := c.Get(ctx, []byte("missing")); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(missing) = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestClose(t *testing.T) {
	n := newFakeNode(t, 1)
	c := newTestClient(t, Config{Endpoints: []string{n.addr}})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := c.Get(context.Background(), []byte("k"))
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}
	if n.Calls("Get") != 0 {
		t.Error("a closed client sent a request")
	}
}

func TestRaw(t *testing.T) {
	n := newFakeNode(t, 7)
	c := newTestClient(t, Config{Endpoints: []string{downAddr(t)}})
	raw, err := c.Raw(n.addr)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := raw.Cluster.Status(context.Background(), connect.NewRequest(&kvdv1.StatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Msg.GetId() != 7 {
		t.Errorf("id = %d, want 7", resp.Msg.GetId())
	}
	if _, err := c.Raw("no-port"); err == nil {
		t.Error("Raw(no-port) succeeded")
	}
}
