package kvtest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/client"
	"github.com/kvd-project/kvd/kvtest"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

func streamClient(t *testing.T, endpoints []string, protocol client.Protocol) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Endpoints: endpoints, Protocol: protocol})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// Many goroutines share one client's stream. Every write gets its own
// result; puts of one key that were in flight together still get distinct
// revisions (two writes of a key never share a Raft entry), and reads,
// compare failures, missing keys and bad input come back exactly as over
// unary calls.
func TestStreamCarriesConcurrentCalls(t *testing.T) {
	for _, protocol := range []client.Protocol{client.ProtocolConnect, client.ProtocolGRPC} {
		t.Run(string(protocol), func(t *testing.T) {
			c := kvtest.NewCluster(t, 3)
			cl := streamClient(t, []string{c.Endpoint(0)}, protocol)
			ctx := context.Background()

			const workers, each = 32, 20
			var (
				mu   sync.Mutex
				revs = map[string]map[uint64]int{} // key → revision → times returned
				wg   sync.WaitGroup
				errs = make(chan error, workers)
			)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < each; i++ {
						// Half the writes go to one hot key, half to own keys.
						key := fmt.Sprintf("own-%d-%d", w, i)
						if i%2 == 0 {
							key = "hot"
						}
						r, err := cl.Put(ctx, []byte(key), []byte(fmt.Sprintf("%d/%d", w, i)))
						if err != nil {
							errs <- fmt.Errorf("put %s: %w", key, err)
							return
						}
						mu.Lock()
						if revs[key] == nil {
							revs[key] = map[uint64]int{}
						}
						revs[key][r.Revision]++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if n := len(revs["hot"]); n != workers*each/2 {
				t.Fatalf("%d puts of one key got %d distinct revisions; two writes of a key shared an entry", workers*each/2, n)
			}
			var max uint64
			for rev, n := range revs["hot"] {
				if n != 1 {
					t.Fatalf("revision %d returned to %d puts of the hot key", rev, n)
				}
				max = maxU(max, rev)
			}
			// Writes of different keys did share entries (that is the point).
			entries := map[uint64]bool{}
			for _, m := range revs {
				for rev := range m {
					entries[rev] = true
				}
			}
			t.Logf("%d writes in %d Raft entries", workers*each, len(entries))

			kv, err := cl.Get(ctx, []byte("hot"))
			if err != nil {
				t.Fatal(err)
			}
			if kv.ModRevision != max || kv.Version != workers*each/2 {
				t.Fatalf("hot key: mod revision %d version %d; want %d and %d", kv.ModRevision, kv.Version, max, workers*each/2)
			}
			if _, err := cl.Get(ctx, []byte("absent"), client.Serializable()); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("get absent key: %v, want ErrNotFound", err)
			}
			_, err = cl.Put(ctx, []byte("hot"), []byte("x"), client.IfModRevision(max-1))
			if !errors.Is(err, client.ErrCompareFailed) {
				t.Fatalf("stale CAS: %v, want ErrCompareFailed", err)
			}
			if cur, ok := client.CurrentModRevision(err); !ok || cur != max {
				t.Fatalf("stale CAS reports current revision %d (%v), want %d", cur, ok, max)
			}
			if r, err := cl.Put(ctx, []byte("hot"), []byte("x"), client.IfModRevision(max)); err != nil || r.Revision <= max {
				t.Fatalf("CAS at the current revision: %+v, %v", r, err)
			}
			d, err := cl.Delete(ctx, []byte("own-0-1"))
			if err != nil || !d.Deleted {
				t.Fatalf("delete: %+v, %v", d, err)
			}
			tx, err := cl.Txn(ctx, []client.Compare{{Key: []byte("own-0-1"), ModRevision: 0}},
				[]client.Op{client.OpPut([]byte("own-0-1"), []byte("again")), client.OpDelete([]byte("own-0-3"))})
			if err != nil || !tx.Succeeded {
				t.Fatalf("txn: %+v, %v", tx, err)
			}
			_, err = cl.Put(ctx, nil, []byte("x"))
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "key is empty") {
				t.Fatalf("put with an empty key: %v, want InvalidArgument naming the empty key", err)
			}
		})
	}
}

// The raw stream: several calls in one message, answered by id; a bad call
// fails alone; a message over the call limit ends the stream with
// InvalidArgument.
func TestStreamRawMessages(t *testing.T) {
	c := kvtest.NewCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st := kvtestH2(t, c).Stream(ctx)
	calls := []*kvdv1.StreamCall{
		{Id: 7, Request: &kvdv1.StreamCall_Put{Put: &kvdv1.PutRequest{Key: []byte("a"), Value: []byte("1")}}},
		{Id: 8, Request: &kvdv1.StreamCall_Put{Put: &kvdv1.PutRequest{Key: []byte("b"), Value: []byte("2")}}},
		{Id: 9, Request: &kvdv1.StreamCall_Get{Get: &kvdv1.GetRequest{Key: []byte("zz")}}},
		{Id: 10},
	}
	if err := st.Send(&kvdv1.StreamRequest{Calls: calls}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Receive()
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]*kvdv1.StreamResult{}
	for _, r := range resp.Results {
		got[r.Id] = r
	}
	if got[7].GetPut().GetRevision() == 0 || got[8].GetPut().GetRevision() == 0 {
		t.Fatalf("puts not answered: %v", resp)
	}
	if e := got[9].GetError(); e == nil || connect.Code(e.Code) != connect.CodeNotFound {
		t.Fatalf("get of a missing key: %v, want NotFound", got[9])
	}
	if e := got[10].GetError(); e == nil || connect.Code(e.Code) != connect.CodeInvalidArgument {
		t.Fatalf("empty call: %v, want InvalidArgument", got[10])
	}

	big := make([]*kvdv1.StreamCall, 1025)
	for i := range big {
		big[i] = &kvdv1.StreamCall{Id: uint64(100 + i), Request: &kvdv1.StreamCall_Get{Get: &kvdv1.GetRequest{Key: []byte("a")}}}
	}
	if err := st.Send(&kvdv1.StreamRequest{Calls: big}); err != nil && !errors.Is(err, errEOF) {
		t.Fatal(err)
	}
	_, err = st.Receive()
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "maximum is 1024") {
		t.Fatalf("oversized message: %v, want InvalidArgument naming the limit", err)
	}
}

// The node a stream goes to stops: calls fail over to another node, reads
// are retried, and every write that was acknowledged is there afterwards.
// The client sends writes to the leader and reads to its current endpoint,
// so the leader is listed first and stopped: both streams are on it.
func TestStreamFailsOver(t *testing.T) {
	c := kvtest.NewCluster(t, 3)
	stopped := c.Leader()
	eps := []string{c.Endpoint(stopped)}
	for i, ep := range c.Endpoints() {
		if i != stopped {
			eps = append(eps, ep)
		}
	}
	cl := streamClient(t, eps, client.ProtocolConnect)
	ctx := context.Background()
	if _, err := cl.Put(ctx, []byte("before"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Get(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	first := cl.CurrentEndpoint()
	if first != eps[0] {
		t.Fatalf("the client reads from %s, not from the first endpoint %s", first, eps[0])
	}
	c.Stop(stopped)
	acked := 0
	for i := 0; i < 50; i++ {
		_, err := cl.Put(ctx, []byte(fmt.Sprintf("after-%d", i)), []byte("v"))
		if err != nil && !client.OutcomeUnknown(err) {
			t.Fatalf("put %d after the node stopped: %v", i, err)
		}
		if err == nil {
			acked++
		}
	}
	if acked < 49 {
		t.Fatalf("only %d of 50 puts acknowledged after failover", acked)
	}
	kvs, err := cl.Scan(ctx, []byte("after-"), 0)
	if err != nil || len(kvs) < acked {
		t.Fatalf("scan after failover: %d keys, %v; want ≥ %d", len(kvs), err, acked)
	}
	if cl.CurrentEndpoint() == first {
		t.Fatalf("client still reads from the stopped node %s", first)
	}
}

// With PreferLeader the client finds the leader among its endpoints before
// the first call, wherever the leader is listed.
func TestPreferLeader(t *testing.T) {
	c := kvtest.NewCluster(t, 3)
	leader := c.Endpoint(c.Leader())
	var eps []string
	for _, ep := range c.Endpoints() {
		if ep != leader {
			eps = append(eps, ep)
		}
	}
	eps = append(eps, leader)
	cl, err := client.New(client.Config{Endpoints: eps, PreferLeader: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if got := cl.CurrentEndpoint(); got != leader {
		t.Fatalf("current endpoint %s, want the leader %s", got, leader)
	}
}

// kvtestH2 is a raw KV client over cleartext HTTP/2 to the first node.
func kvtestH2(t *testing.T, c *kvtest.Cluster) kvdv1connect.KVClient {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return kvdv1connect.NewKVClient(&http.Client{Transport: tr}, "http://"+c.Endpoint(0))
}

var errEOF = io.EOF

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// The node a stream goes to stops while calls are in flight on it: no call
// hangs, every error is an unknown outcome or a retried-and-failed
// Unavailable, and every acknowledged write is there afterwards.
func TestStreamNodeStopsMidFlight(t *testing.T) {
	c := kvtest.NewCluster(t, 3)
	target := (c.Leader() + 1) % 3 // a follower: its writes are forwarded
	eps := []string{c.Endpoint(target)}
	for i := 0; i < 3; i++ {
		if i != target {
			eps = append(eps, c.Endpoint(i))
		}
	}
	cl, err := client.New(client.Config{Endpoints: eps, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	var (
		mu    sync.Mutex
		acked = map[string]string{}
		wg    sync.WaitGroup
	)
	stop := time.Now().Add(2 * time.Second)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				key, val := fmt.Sprintf("w%d-%d", w, i), fmt.Sprint(i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := cl.Put(ctx, []byte(key), []byte(val))
				cancel()
				switch {
				case err == nil:
					mu.Lock()
					acked[key] = val
					mu.Unlock()
				case client.OutcomeUnknown(err), errors.Is(err, client.ErrUnavailable):
				default:
					t.Errorf("put %s: %v", key, err)
					return
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	c.Stop(target)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("calls still hanging 30 s after the node stopped")
	}
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}
	other := (target + 1) % 3
	for key, val := range acked {
		got, err := c.Get(other, key, false)
		if err != nil || got != val {
			t.Fatalf("acknowledged %s=%s, read %q, %v", key, val, got, err)
		}
	}
	t.Logf("%d writes acknowledged across the stop", len(acked))
}
