package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/anishathalye/porcupine"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// The client workload of the fault suite: a few clients doing puts,
// linearizable gets and CAS on a small keyspace (the checked history), and
// a stream of puts of fresh keys (checked for loss at the end). Clients talk
// to every node's published port, moving to the next one on errors and now
// and then at random, with no retries of their own: every attempt is one
// operation of the history.

const (
	workloadClients = 5
	uniqueWriters   = 2
	opTimeout       = 2 * time.Second
	uniquePrefix    = "u/"
)

var workloadKeys = []string{"k0", "k1", "k2", "k3"}

type workload struct {
	c        *cluster
	scenario string
	start    time.Time
	seed     uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup

	procs atomic.Int64 // porcupine client IDs handed out

	mu     sync.Mutex
	ops    []porcupine.Operation
	faults []fault
	kvs    map[string]kvdv1connect.KVClient

	n struct{ ok, failed, unknown, compareFailed atomic.Int64 }
	u struct {
		mu      sync.Mutex
		acked   map[string]string
		unknown int
		failed  int
	}
}

type fault struct {
	at   time.Duration
	what string
}

// startWorkload starts the clients against c's running containers.
func startWorkload(c *cluster, scenario string) *workload {
	w := &workload{c: c, scenario: scenario, start: time.Now(), seed: uint64(time.Now().UnixNano()),
		kvs: map[string]kvdv1connect.KVClient{}}
	w.u.acked = map[string]string{}
	c.t.Logf("workload seed %d", w.seed)
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(1)
	go func() { // follows containers that restart on other host ports
		defer w.wg.Done()
		for ctx.Err() == nil {
			c.refresh()
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	for i := 0; i < workloadClients; i++ {
		w.wg.Add(1)
		go func() { defer w.wg.Done(); w.client(ctx, i) }()
	}
	for i := 0; i < uniqueWriters; i++ {
		w.wg.Add(1)
		go func() { defer w.wg.Done(); w.uniqueWriter(ctx, i) }()
	}
	return w
}

func (w *workload) now() int64 { return int64(time.Since(w.start)) }

// fault records a fault injected (or healed) now.
func (w *workload) fault(format string, args ...any) {
	f := fault{at: time.Since(w.start), what: fmt.Sprintf(format, args...)}
	w.mu.Lock()
	w.faults = append(w.faults, f)
	w.mu.Unlock()
	w.c.t.Logf("+%s %s", f.at.Round(10*time.Millisecond), f.what)
}

func (w *workload) kv(ep string) kvdv1connect.KVClient {
	w.mu.Lock()
	defer w.mu.Unlock()
	k, ok := w.kvs[ep]
	if !ok {
		k = kvdv1connect.NewKVClient(w.c.http, w.c.scheme+"://"+ep)
		w.kvs[ep] = k
	}
	return k
}

// outcome classifies a finished call.
type outcome int

const (
	outOK       outcome = iota
	outFailed           // definitely not applied
	outUnknown          // a write that may or may not have been applied
	outCompare          // a CAS whose compare did not hold (a successful op)
	outNotFound         // a read of an absent key (a successful op)
)

// classify follows kvd's error contract (rpc/errors.go): codes the server
// sends before proposing mean nothing was applied; a connection that broke
// after the request may have been sent, a timeout, Unknown or Internal
// leave a write's outcome unknown. Only errors that came over the wire
// (connect.IsWireError) are the server's word; the client synthesizes
// Unavailable for transport failures too.
func classify(err error, write bool) outcome {
	if err == nil {
		return outOK
	}
	code := connect.CodeOf(err)
	if connect.IsWireError(err) {
		switch code {
		case connect.CodeNotFound:
			if !write {
				return outNotFound
			}
		case connect.CodeFailedPrecondition:
			if write {
				return outCompare
			}
		case connect.CodeUnavailable, connect.CodeInvalidArgument, connect.CodePermissionDenied,
			connect.CodeResourceExhausted, connect.CodeUnimplemented, connect.CodeUnauthenticated:
			return outFailed
		}
	}
	if !write || errors.Is(err, syscall.ECONNREFUSED) {
		return outFailed // a read has no effect; a refused connection sent nothing
	}
	return outUnknown
}

// record adds one operation to the history. A failed read is left out: it
// constrains nothing.
func (w *workload) record(proc int, in kvInput, call int64, out kvOutput, o outcome, meta string) {
	switch o {
	case outFailed:
		w.n.failed.Add(1)
		if in.Kind == opGet {
			return
		}
	case outUnknown:
		w.n.unknown.Add(1)
	case outCompare:
		w.n.compareFailed.Add(1)
		w.n.ok.Add(1)
	default:
		w.n.ok.Add(1)
	}
	if o == outFailed {
		return
	}
	ret := w.now()
	if o == outUnknown {
		ret = -1 // set past the end of the history by check
	}
	w.mu.Lock()
	w.ops = append(w.ops, porcupine.Operation{ClientId: proc, Input: in, Call: call, Output: out, Return: ret, Metadata: meta})
	w.mu.Unlock()
}

// do runs one operation against ep and records it.
func (w *workload) do(proc int, ep string, in kvInput) (kvOutput, outcome) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	kv := w.kv(ep)
	var out kvOutput
	var err error
	call := w.now()
	switch in.Kind {
	case opGet:
		var resp *connect.Response[kvdv1.GetResponse]
		resp, err = kv.Get(ctx, connect.NewRequest(&kvdv1.GetRequest{Key: []byte(in.Key),
			Consistency: kvdv1.Consistency_CONSISTENCY_LINEARIZABLE}))
		if err == nil {
			out = kvOutput{Found: true, Value: string(resp.Msg.GetKv().GetValue()), Rev: resp.Msg.GetKv().GetModRevision()}
		}
	case opCAS:
		if !in.Txn {
			out, err = w.putCAS(ctx, kv, in)
			break
		}
		var resp *connect.Response[kvdv1.TxnResponse]
		resp, err = kv.Txn(ctx, connect.NewRequest(&kvdv1.TxnRequest{
			Compares: []*kvdv1.Compare{{Key: []byte(in.Key), ModRevision: in.Expect}},
			Ops:      []*kvdv1.TxnOp{{Op: &kvdv1.TxnOp_Put{Put: &kvdv1.PutRequest{Key: []byte(in.Key), Value: []byte(in.Value)}}}},
		}))
		if err == nil {
			out = kvOutput{Rev: resp.Msg.Revision}
			if !resp.Msg.Succeeded {
				out = kvOutput{CompareFailed: true}
				if cur := resp.Msg.CurrentModRevisions; len(cur) == 1 {
					out.Current, out.CurrentKnown = cur[0], true
				}
			}
		}
	case opPut:
		out, err = w.putCAS(ctx, kv, in)
	}
	o := classify(err, in.Kind != opGet)
	switch {
	case o == outUnknown:
		out = kvOutput{Unknown: true}
	case o == outCompare && in.Kind == opCAS && !in.Txn:
		out = kvOutput{CompareFailed: true}
		out.Current, out.CurrentKnown = currentModRevision(err)
	case o == outCompare: // FailedPrecondition where no compare was asked for: unexpected
		o, out = outUnknown, kvOutput{Unknown: true}
	case o == outOK && out.CompareFailed:
		o = outCompare
	}
	meta := ep
	if err != nil {
		meta += ": " + err.Error()
	}
	w.record(proc, in, call, out, o, meta)
	return out, o
}

// putCAS is a Put, with if_mod_revision for a CAS.
func (w *workload) putCAS(ctx context.Context, kv kvdv1connect.KVClient, in kvInput) (kvOutput, error) {
	req := &kvdv1.PutRequest{Key: []byte(in.Key), Value: []byte(in.Value)}
	if in.Kind == opCAS {
		req.IfModRevision = &in.Expect
	}
	resp, err := kv.Put(ctx, connect.NewRequest(req))
	if err != nil {
		return kvOutput{}, err
	}
	return kvOutput{Rev: resp.Msg.Revision}, nil
}

// currentModRevision reads the key's actual mod revision from a failed
// CAS's error detail (a KeyValue; 0 = absent).
func currentModRevision(err error) (uint64, bool) {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return 0, false
	}
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if kv, ok := v.(*kvdv1.KeyValue); ok {
				return kv.ModRevision, true
			}
		}
	}
	return 0, false
}

// client does gets, puts and CAS on the keyspace until ctx is done.
func (w *workload) client(ctx context.Context, idx int) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(idx)))
	proc := int(w.procs.Add(1) - 1)
	rev := map[string]uint64{} // last mod revision this client learnt per key
	seen := map[string]bool{}
	next := idx
	for seq := 0; ctx.Err() == nil; seq++ {
		eps := w.c.endpoints()
		if len(eps) == 0 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		ep := eps[next%len(eps)]
		key := workloadKeys[rng.IntN(len(workloadKeys))]
		in := kvInput{Kind: opGet, Key: key}
		switch r := rng.IntN(10); {
		case r >= 4 && r < 7:
			in = kvInput{Kind: opPut, Key: key, Value: fmt.Sprintf("c%d-%d", idx, seq)}
		case r >= 7 && seen[key]:
			in = kvInput{Kind: opCAS, Key: key, Value: fmt.Sprintf("c%d-%d", idx, seq), Expect: rev[key], Txn: r == 9}
		}
		out, o := w.do(proc, ep, in)
		switch o {
		case outOK:
			rev[key], seen[key] = out.Rev, true
		case outNotFound:
			rev[key], seen[key] = 0, true
		case outCompare:
			if out.CurrentKnown {
				rev[key] = out.Current
			}
		case outUnknown:
			proc = int(w.procs.Add(1) - 1) // the open op keeps its own row
			fallthrough
		case outFailed:
			next++
			time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
			continue
		}
		if rng.IntN(10) == 0 {
			next = rng.IntN(len(eps))
		}
		time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
	}
}

// uniqueWriter puts fresh keys, remembering the acknowledged ones.
func (w *workload) uniqueWriter(ctx context.Context, idx int) {
	next := idx
	for seq := 0; ctx.Err() == nil; seq++ {
		eps := w.c.endpoints()
		if len(eps) == 0 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		key, val := fmt.Sprintf("%s%d/%06d", uniquePrefix, idx, seq), fmt.Sprintf("v%d-%d", idx, seq)
		octx, cancel := context.WithTimeout(context.Background(), opTimeout)
		_, err := w.kv(eps[next%len(eps)]).Put(octx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte(key), Value: []byte(val)}))
		cancel()
		o := classify(err, true)
		w.u.mu.Lock()
		switch o {
		case outOK:
			w.u.acked[key] = val
		case outUnknown:
			w.u.unknown++
		default:
			w.u.failed++
		}
		w.u.mu.Unlock()
		if o != outOK {
			next++
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitOK waits for n more successful operations (the cluster serves).
func (w *workload) waitOK(n int64, timeout time.Duration) {
	w.c.t.Helper()
	target := w.n.ok.Load() + n
	deadline := time.Now().Add(timeout)
	for w.n.ok.Load() < target {
		if time.Now().After(deadline) {
			w.c.t.Fatalf("the workload did not complete %d operations within %s (%d ok, %d failed, %d unknown)",
				n, timeout, w.n.ok.Load(), w.n.failed.Load(), w.n.unknown.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the clients and waits for them.
func (w *workload) stop() {
	w.cancel()
	w.wg.Wait()
}
