package node

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kvd-project/kvd/internal/freeport"
	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/statemachine"
)

// testConfig is a single voter in a temp dir with fast Raft timing.
func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.RaftAddr = freeport.Addr(t)
	cfg.APIAddr = "127.0.0.1:1"
	cfg.RTT = 10 * time.Millisecond
	cfg.ElectionTicks = 10
	cfg.HeartbeatTicks = 1
	cfg.Logger = slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return cfg
}

// testLog sends log lines to the test's output.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startReady starts a node and waits (bounded) until it is ready.
func startReady(t *testing.T, cfg Config) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for !n.Ready() {
		if ctx.Err() != nil {
			n.Stop()
			t.Fatalf("not ready: %+v", n.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return n
}

// Stop leaves no goroutine of the node behind (nor of Dragonboat or Pebble
// for this node: NodeHost.Close waits for them).
func TestStopLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t)
	n := startReady(t, testConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.Membership(ctx); err != nil {
		t.Fatal(err)
	}
	n.Stop()
	n.Stop() // idempotent
}

// MarkRemoved has recorded the removal when it returns (no goroutine left
// to do it later, after Stop), and Stop waits for everything.
func TestMarkRemovedIsDoneWhenItReturns(t *testing.T) {
	defer goleak.VerifyNone(t)
	cfg := testConfig(t)
	n := startReady(t, cfg)
	defer n.Stop() // also when the test fails: before VerifyNone
	n.MarkRemoved()
	select {
	case <-n.Removed():
	default:
		t.Fatal("Removed() not closed when MarkRemoved returned")
	}
	if !membership.IsRemoved(cfg.DataDir) {
		t.Fatal("no removal marker when MarkRemoved returned")
	}
	n.MarkRemoved() // once only
	n.Stop()
	if got := n.Status().State; got != membership.StateStopped {
		t.Fatalf("state after Stop = %s, want stopped", got)
	}
}

// A Start refused after the NodeHost opened (here: the flags contradict
// the identity on disk) leaves nothing running.
func TestRefusedStartLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t)
	cfg := testConfig(t)
	startReady(t, cfg).Stop()
	cfg.ReplicaID = 5
	n, err := Start(context.Background(), cfg)
	if err == nil {
		n.Stop()
		t.Fatal("a restart under another replica ID was not refused")
	}
	t.Log(err)
}

// The typed reads: Get, Range and ReadAll return the state machine's
// results as their own types, linearizable or local; a stopped node
// refuses them with ErrStopped.
func TestTypedReads(t *testing.T) {
	defer goleak.VerifyNone(t)
	n := startReady(t, testConfig(t))
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range []string{"a", "b"} {
		cmd := statemachine.Command{Ops: []statemachine.Op{{Type: statemachine.OpPut, Key: []byte(k), Value: []byte("v" + k)}}}
		if _, err := n.Write(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range []ReadMode{Linearizable, Serializable} {
		g, err := n.Get(ctx, statemachine.GetQuery{Key: []byte("a")}, mode)
		if err != nil || g.KV == nil || string(g.KV.Value) != "va" {
			t.Fatalf("get a (mode %d) = %+v, %v", mode, g, err)
		}
		r, err := n.Range(ctx, statemachine.RangeQuery{Start: []byte("a"), End: []byte("c")}, mode)
		if err != nil || len(r.KVs) != 2 || string(r.KVs[1].Key) != "b" {
			t.Fatalf("range (mode %d) = %+v, %v", mode, r, err)
		}
		all, err := n.ReadAll(ctx, []statemachine.GetQuery{{Key: []byte("b")}, {Key: []byte("zz")}}, mode)
		if err != nil || len(all) != 2 || string(all[0].KV.Value) != "vb" || all[1].KV != nil {
			t.Fatalf("read all (mode %d) = %+v, %v", mode, all, err)
		}
	}
	n.Stop()
	if _, err := n.Get(ctx, statemachine.GetQuery{Key: []byte("a")}, Linearizable); !errors.Is(err, ErrStopped) {
		t.Fatalf("get after Stop: %v, want ErrStopped", err)
	}
}
