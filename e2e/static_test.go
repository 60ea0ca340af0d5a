package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/internal/freeport"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// startStatic starts n kvd processes bootstrapped with --initial-members.
func startStatic(t *testing.T, n int) []*proc {
	t.Helper()
	raft := make([]string, n)
	var members []string
	for i := range raft {
		raft[i] = freeport.Addr(t)
		members = append(members, fmt.Sprintf("%d=%s", i+1, raft[i]))
	}
	procs := make([]*proc, n)
	for i := range procs {
		api := freeport.Addr(t)
		procs[i] = newProc(t, fmt.Sprintf("kvd%d", i+1), api,
			"--data-dir", t.TempDir(), "--listen", api, "--raft-addr", raft[i],
			"--node-id", fmt.Sprint(i+1), "--initial-members", strings.Join(members, ","),
			"--rtt", "10ms", "--log-level", "info")
		procs[i].start()
	}
	for _, p := range procs {
		p.waitReady(30 * time.Second)
	}
	return procs
}

// leaderIndex asks the nodes who leads, waiting for an answer.
func leaderIndex(t *testing.T, procs []*proc) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range procs {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := p.status(ctx)
			cancel()
			if err == nil && st.LeaderId != 0 {
				return int(st.LeaderId) - 1
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no leader within 15s")
	return -1
}

// writers put unique keys through any node, moving to the next node on any
// error, and record every acknowledged write.
type writers struct {
	procs  []*proc
	mu     sync.Mutex
	acked  map[string]string
	failed atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startWriters(procs []*proc, n int) *writers {
	w := &writers{procs: procs, acked: map[string]string{}, stop: make(chan struct{})}
	for g := 0; g < n; g++ {
		w.wg.Add(1)
		go func(g int) {
			defer w.wg.Done()
			target := g % len(procs)
			for seq := 0; ; seq++ {
				select {
				case <-w.stop:
					return
				default:
				}
				key, val := fmt.Sprintf("w%d-%06d", g, seq), fmt.Sprintf("value-%d-%d", g, seq)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := procs[target].kv().Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte(key), Value: []byte(val)}))
				cancel()
				if err != nil {
					w.failed.Add(1)
					target = (target + 1) % len(procs)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				w.mu.Lock()
				w.acked[key] = val
				w.mu.Unlock()
			}
		}(g)
	}
	return w
}

func (w *writers) halt() map[string]string {
	close(w.stop)
	w.wg.Wait()
	return w.acked
}

func (w *writers) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// checkAll reads every acknowledged key from p.
func checkAll(t *testing.T, p *proc, acked map[string]string, cons kvdv1.Consistency) {
	t.Helper()
	for key, val := range acked {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := p.kv().Get(ctx, connect.NewRequest(&kvdv1.GetRequest{Key: []byte(key), Consistency: cons}))
		cancel()
		if err != nil {
			t.Fatalf("%s: acknowledged key %q: %v", p.name, key, err)
		}
		if got := string(resp.Msg.Kv.Value); got != val {
			t.Fatalf("%s: acknowledged key %q = %q, want %q", p.name, key, got, val)
		}
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SIGKILL of the leader of a static 3-node cluster under write load: no
// acknowledged write is lost, and the restarted node catches up.
func TestStaticClusterLeaderSIGKILL(t *testing.T) {
	procs := startStatic(t, 3)
	w := startWriters(procs, 4)
	waitFor(t, "100 acknowledged writes", 20*time.Second, func() bool { return w.count() >= 100 })

	leader := leaderIndex(t, procs)
	procs[leader].kill()
	before := w.count()
	waitFor(t, "writes to resume without the old leader", 20*time.Second, func() bool { return w.count() >= before+100 })
	procs[leader].start()
	procs[leader].waitReady(30 * time.Second)
	after := w.count()
	waitFor(t, "writes after the restart", 20*time.Second, func() bool { return w.count() >= after+50 })
	acked := w.halt()
	t.Logf("acknowledged %d writes, %d failed attempts", len(acked), w.failed.Load())

	// The restarted node serves every acknowledged write from its own state
	// once it is ready; linearizable reads on the others see them too.
	procs[leader].waitReady(10 * time.Second)
	for i, p := range procs {
		cons := kvdv1.Consistency_CONSISTENCY_LINEARIZABLE
		if i == leader {
			cons = kvdv1.Consistency_CONSISTENCY_SERIALIZABLE
		}
		checkAll(t, p, acked, cons)
	}
}

// SIGKILL of every node at once, then a restart with the same commands:
// same data, a leader again.
func TestStaticClusterWholeSIGKILL(t *testing.T) {
	procs := startStatic(t, 3)
	w := startWriters(procs, 4)
	waitFor(t, "200 acknowledged writes", 20*time.Second, func() bool { return w.count() >= 200 })
	for _, p := range procs {
		p.kill()
	}
	acked := w.halt()
	for _, p := range procs {
		p.start()
	}
	for _, p := range procs {
		p.waitReady(30 * time.Second)
	}
	leaderIndex(t, procs)
	for _, p := range procs {
		checkAll(t, p, acked, kvdv1.Consistency_CONSISTENCY_LINEARIZABLE)
	}
	for _, p := range procs {
		if err := p.stop(); err != nil {
			t.Error(err)
		}
	}
}
