package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// load writes keys key-000000.. of valueSize bytes through Txn batches.
func load(t *testing.T, p *proc, keys, valueSize, batch int) {
	t.Helper()
	val := make([]byte, valueSize)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := range next {
				req := &kvdv1.TxnRequest{}
				for k := start; k < start+batch && k < keys; k++ {
					req.Ops = append(req.Ops, &kvdv1.TxnOp{Op: &kvdv1.TxnOp_Put{Put: &kvdv1.PutRequest{
						Key: fmt.Appendf(nil, "key-%06d", k), Value: val}}})
				}
				var err error
				for attempt := 0; attempt < 50; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					_, err = p.kv().Txn(ctx, connect.NewRequest(req))
					cancel()
					if connect.CodeOf(err) != connect.CodeUnavailable {
						break // Unavailable: nothing applied, back off (overload)
					}
					time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for start := 0; start < keys; start += batch {
		select {
		case next <- start:
		case err := <-errs:
			close(next)
			t.Fatalf("load: %v", err)
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("load: %v", err)
	default:
	}
}

// countKeys counts keys with prefix on p with serializable (local) reads.
func countKeys(t *testing.T, p *proc, prefix string) int {
	t.Helper()
	n := 0
	var token []byte
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := p.kv().Range(ctx, connect.NewRequest(&kvdv1.RangeRequest{
			Prefix: []byte(prefix), KeysOnly: true, PageToken: token,
			Consistency: kvdv1.Consistency_CONSISTENCY_SERIALIZABLE}))
		cancel()
		if err != nil {
			t.Fatalf("range on %s: %v", p.name, err)
		}
		n += len(resp.Msg.Kvs)
		if !resp.Msg.More {
			return n
		}
		token = resp.Msg.NextPageToken
	}
}

// gate is what a catching-up joiner was seen to answer.
type gate struct {
	readyz       string // a 503 body of /readyz
	serializable string // the Unavailable error of a serializable get
}

// observeGate polls the joiner's /readyz and a serializable get until it is
// ready, keeping the first "not ready" answers.
func observeGate(j *proc, done <-chan struct{}) *gate {
	g := &gate{}
	for {
		select {
		case <-done:
			return g
		default:
		}
		if resp, err := http.Get("http://" + j.api + "/readyz"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "applied") && g.readyz == "" {
				g.readyz = string(body)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := j.kv().Get(ctx, connect.NewRequest(&kvdv1.GetRequest{Key: []byte("key-000000"),
			Consistency: kvdv1.Consistency_CONSISTENCY_SERIALIZABLE}))
		cancel()
		if connect.CodeOf(err) == connect.CodeUnavailable && strings.Contains(err.Error(), "catching up") && g.serializable == "" {
			g.serializable = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// joinTime starts a joiner and returns how long it took to be a ready voter,
// and what its catch-up gate answered meanwhile.
func joinTime(t *testing.T, boot *proc, name string) (*proc, time.Duration, *gate) {
	t.Helper()
	j := newJoiner(t, name, []*proc{boot})
	start := time.Now()
	j.start()
	done := make(chan struct{})
	gc := make(chan *gate, 1)
	go func() { gc <- observeGate(j, done) }()
	defer close(done)
	deadline := start.Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ms, err := membersOf(ctx, boot)
		cancel()
		if err == nil {
			for _, m := range ms.Members {
				if m.ApiAddr == j.api && m.Role == kvdv1.Role_ROLE_VOTER && m.Ready {
					took := time.Since(start)
					done <- struct{}{}
					return j, took, <-gc
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not a ready voter within 5 minutes", name)
	return nil, 0, nil
}

// A joiner catches up on ~100 MB (100k keys × 1 KiB) and promotes itself;
// the time from `kvd --join` to voter is reported next to an empty store's.
// The leader compacts its log early, so the joiner receives the whole store
// as a streamed snapshot (the on-disk state machine's SaveSnapshot →
// RecoverFromSnapshot path), not as log entries.
func TestJoinerCatchesUp100MB(t *testing.T) {
	const keys, size = 100_000, 1024
	empty := startBootstrap(t)
	_, emptyTime, _ := joinTime(t, empty, "kvd-join-empty")

	boot := startBootstrap(t, "--snapshot-entries", "100", "--compaction-overhead", "10")
	began := time.Now()
	load(t, boot, keys, size, 100)
	t.Logf("loaded %d keys × %d B in %s", keys, size, time.Since(began).Round(100*time.Millisecond))
	j, fullTime, g := joinTime(t, boot, "kvd-join-100mb")
	t.Logf("join → voter: empty store %s, ~100 MB %s (promote-after 500ms)", emptyTime.Round(10*time.Millisecond), fullTime.Round(10*time.Millisecond))
	// While it caught up, the joiner said how far behind it was.
	t.Logf("catching up: /readyz %q; serializable get %q", strings.TrimSpace(g.readyz), g.serializable)
	if g.readyz == "" || g.serializable == "" {
		t.Errorf("the catch-up gate was not seen: /readyz %q, serializable get %q", g.readyz, g.serializable)
	}
	if n := countKeys(t, j, "key-"); n != keys {
		t.Fatalf("joiner has %d keys, want %d", n, keys)
	}
	if !strings.Contains(j.logs(), "recovered from snapshot") {
		t.Errorf("the joiner did not recover from a streamed snapshot:\n%s", j.logs())
	}
}
