package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-project/kvd/node"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/statemachine"
)

const (
	// maxStreamCalls is the most calls one StreamRequest may carry.
	maxStreamCalls = 1024
	// maxStreamInflight is the most StreamRequests of one stream served at
	// once; beyond it the handler stops reading and HTTP/2 flow control
	// pushes back on the client.
	maxStreamInflight = 64
	// inlineValueBytes is the longest value a stream get reads in its first
	// pass; longer ones are read again once the values budget has room.
	inlineValueBytes = 1 << 10
	// resultOverhead is what one call's answer costs besides its value.
	resultOverhead = 128
)

// Stream serves calls arriving over one bidirectional stream. Each
// StreamRequest is served on its own goroutine, so a slow write does not
// hold up the calls behind it; its writes go to the node's batcher, where
// they share Raft entries with every other write in flight, and its gets
// share one ReadIndex. Results go back as one StreamResponse per request.
//
// Two budgets of Limits.MaxStreamBytes bound the memory a stream holds,
// whether or not its client reads: a request takes its size (plus room for
// small answers) from the first before it is served, and the values of
// large gets (over inlineValueBytes) take theirs from the second before
// they are read; both are given back once the response is sent. When the
// first budget is spent the handler stops reading and HTTP/2 flow control
// pushes back on the client. Each budget is taken once per request, so no
// request holds part of one while it waits for more of it.
func (s *kvServer) Stream(ctx context.Context, st *connect.BidiStream[kvdv1.StreamRequest, kvdv1.StreamResponse]) error {
	return s.stream(ctx, st, st)
}

// stream serves one stream of either protocol: it receives from in and
// sends on out.
func (s *kvServer) stream(ctx context.Context, in receiver[kvdv1.StreamRequest], out sender[kvdv1.StreamResponse]) error {
	var (
		sender   = &streamSender{st: out}
		wg       sync.WaitGroup
		slots    = make(chan struct{}, maxStreamInflight)
		requests = newByteBudget(int64(s.limits.MaxStreamBytes))
		values   = newByteBudget(int64(s.limits.MaxStreamBytes))
	)
	defer wg.Wait()
	for {
		req, err := in.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		start := time.Now()
		if n := len(req.Calls); n > maxStreamCalls {
			return invalid("stream: a message carries %d calls; the maximum is %d, send them in several messages", n, maxStreamCalls)
		}
		held, err := requests.acquire(ctx, requestCost(req))
		if err != nil {
			return err
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			requests.release(held)
			return ctx.Err()
		}
		wg.Go(func() {
			b := s.serveCalls(ctx, req.Calls, values)
			sender.send(b.out)
			s.metrics.observeStream(b.kinds, b.out.Results, time.Since(start))
			values.release(b.heldValues)
			requests.release(held)
			<-slots
		})
	}
}

// streamSender sends the responses of one stream, one at a time; after a
// failed send it sends nothing more (the stream is broken).
type streamSender struct {
	mu  sync.Mutex
	err error
	st  sender[kvdv1.StreamResponse]
}

func (s *streamSender) send(resp *kvdv1.StreamResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = s.st.Send(resp)
	}
}

// requestCost is what serving req may hold besides large values: the
// request itself and, per call, its answer with a value of up to
// inlineValueBytes.
func requestCost(req *kvdv1.StreamRequest) int64 {
	n := int64(proto.Size(req))
	for _, c := range req.Calls {
		n += resultOverhead
		if c.GetGet() != nil {
			n += inlineValueBytes
		}
	}
	return n
}

// streamBatch is one StreamRequest being served: its writes go to
// WriteAll together, its gets to ReadAll by consistency, and out holds one
// answer per call.
type streamBatch struct {
	calls      []*kvdv1.StreamCall
	out        *kvdv1.StreamResponse
	kinds      []string // each call's kind, for the metrics
	writes     []streamWrite
	gets       [2]streamGets // by modeIndex
	heldValues int64         // taken from the values budget, to give back once sent
}

// streamWrite is a write call: the unary call's command, and how its
// result becomes the call's answer.
type streamWrite struct {
	call   int // index in calls
	cmd    statemachine.Command
	answer func(*kvdv1.StreamResult, statemachine.Result) error
}

// streamGets are the gets of one consistency.
type streamGets struct {
	calls []int // index in calls of each query
	qs    []statemachine.GetQuery
	large []largeGet // values too long for the first pass
}

// largeGet is a get whose value was too long to read in the first pass.
type largeGet struct {
	call int // index in the request's calls
	mode int // index in modes
	size int // value bytes seen in the first pass
}

// serveCalls runs the calls of one StreamRequest: writes through
// WriteAll and gets grouped by consistency through ReadAll, concurrently;
// then the values of large gets within the values budget.
func (s *kvServer) serveCalls(ctx context.Context, calls []*kvdv1.StreamCall, values *byteBudget) *streamBatch {
	b := s.prepare(calls)
	var wg sync.WaitGroup
	for m := range b.gets {
		if len(b.gets[m].qs) > 0 {
			wg.Go(func() { s.serveGets(ctx, b, m) })
		}
	}
	s.serveWrites(ctx, b)
	wg.Wait()
	b.heldValues = s.readLarge(ctx, b, values)
	return b
}

// prepare sorts the calls into writes and gets, one case per call kind;
// a call that is not valid is answered at once, as the unary call would be.
func (s *kvServer) prepare(calls []*kvdv1.StreamCall) *streamBatch {
	b := &streamBatch{calls: calls, out: &kvdv1.StreamResponse{Results: make([]*kvdv1.StreamResult, len(calls))},
		kinds: make([]string, len(calls))}
	for i, c := range calls {
		b.out.Results[i] = &kvdv1.StreamResult{Id: c.Id}
		var (
			w   streamWrite
			err error
		)
		switch r := c.Request.(type) {
		case *kvdv1.StreamCall_Put:
			b.kinds[i] = "put"
			w, err = s.streamPut(r.Put)
		case *kvdv1.StreamCall_Delete:
			b.kinds[i] = "delete"
			w, err = s.streamDelete(r.Delete)
		case *kvdv1.StreamCall_Txn:
			b.kinds[i] = "txn"
			w, err = s.streamTxn(r.Txn)
		case *kvdv1.StreamCall_Get:
			b.kinds[i], err = "get", s.addGet(b, i, r.Get)
		default:
			b.kinds[i], err = "none", invalid("stream call %d: set put, get, delete or txn", c.Id)
		}
		switch {
		case err != nil:
			setError(b.out.Results[i], err)
		case w.answer != nil:
			w.call = i
			b.writes = append(b.writes, w)
		}
	}
	return b
}

// streamPut, streamDelete and streamTxn are the write calls: each the
// unary call's command and response.
func (s *kvServer) streamPut(m *kvdv1.PutRequest) (streamWrite, error) {
	cmd, err := s.putCommand(m)
	return streamWrite{cmd: cmd, answer: func(res *kvdv1.StreamResult, r statemachine.Result) error {
		put, err := putResponse(m, r)
		if err == nil {
			res.Response = &kvdv1.StreamResult_Put{Put: put}
		}
		return err
	}}, err
}

func (s *kvServer) streamDelete(m *kvdv1.DeleteRequest) (streamWrite, error) {
	cmd, err := s.deleteCommand(m)
	return streamWrite{cmd: cmd, answer: func(res *kvdv1.StreamResult, r statemachine.Result) error {
		del, err := deleteResponse(m, r)
		if err == nil {
			res.Response = &kvdv1.StreamResult_Delete{Delete: del}
		}
		return err
	}}, err
}

func (s *kvServer) streamTxn(m *kvdv1.TxnRequest) (streamWrite, error) {
	cmd, err := s.txnCommand(m)
	return streamWrite{cmd: cmd, answer: func(res *kvdv1.StreamResult, r statemachine.Result) error {
		res.Response = &kvdv1.StreamResult_Txn{Txn: txnResponse(r)}
		return nil
	}}, err
}

// addGet queues get call i with the gets of its consistency; its first
// pass reads values of up to inlineValueBytes.
func (s *kvServer) addGet(b *streamBatch, i int, m *kvdv1.GetRequest) error {
	q, mode, err := s.getQuery(m)
	if err != nil {
		return err
	}
	q.ValueLimit = inlineValueBytes
	g := &b.gets[modeIndex(mode)]
	g.calls = append(g.calls, i)
	g.qs = append(g.qs, q)
	return nil
}

// serveWrites runs the batch's writes through the node's batcher, each
// with its own outcome.
func (s *kvServer) serveWrites(ctx context.Context, b *streamBatch) {
	if len(b.writes) == 0 {
		return
	}
	cmds := make([]statemachine.Command, len(b.writes))
	for j, w := range b.writes {
		cmds[j] = w.cmd
	}
	results, errs := s.store.WriteAll(ctx, cmds)
	for j, w := range b.writes {
		res := b.out.Results[w.call]
		if errs[j] != nil {
			setError(res, toConnect(errs[j]))
		} else if err := w.answer(res, results[j]); err != nil {
			setError(res, err)
		}
	}
}

// serveGets reads the gets of consistency modes[m] behind one consistency
// check; values too long for the first pass are left for readLarge.
func (s *kvServer) serveGets(ctx context.Context, b *streamBatch, m int) {
	g := &b.gets[m]
	vs, err := s.store.ReadAll(ctx, g.qs, modes[m])
	for j, i := range g.calls {
		res := b.out.Results[i]
		if err != nil {
			setError(res, toConnect(err))
			continue
		}
		switch r := vs[j]; {
		case r.KV != nil && r.ValueSize > inlineValueBytes:
			g.large = append(g.large, largeGet{call: i, mode: m, size: r.ValueSize})
		default:
			answerGet(res, b.calls[i].GetGet(), r)
		}
	}
}

// answerGet answers a get call as the unary Get would.
func answerGet(res *kvdv1.StreamResult, m *kvdv1.GetRequest, r statemachine.GetResult) {
	get, err := getResponse(m, r)
	if err != nil {
		setError(res, err)
		return
	}
	res.Response = &kvdv1.StreamResult_Get{Get: get}
}

// readLarge reads the values of large gets, in call order, as far as one
// values budget goes (the first always): each response is one message, so
// a message asking for more is answered ResourceExhausted for the rest,
// which clients ask for again in another message or with Get. It takes the
// budget before it reads and returns what it took.
func (s *kvServer) readLarge(ctx context.Context, b *streamBatch, values *byteBudget) int64 {
	large := append(b.gets[0].large, b.gets[1].large...)
	if len(large) == 0 {
		return 0
	}
	sort.Slice(large, func(x, y int) bool { return large[x].call < large[y].call })
	granted, total := s.grantLarge(b, large)
	held, err := values.acquire(ctx, int64(total))
	if err != nil {
		for _, gs := range granted {
			for _, g := range gs {
				setError(b.out.Results[g.call], toConnect(err))
			}
		}
		return 0
	}
	for m, gs := range granted {
		if len(gs) > 0 {
			s.readGranted(ctx, b, m, gs)
		}
	}
	return held
}

// grantLarge picks the large gets that fit in one values budget, in call
// order (the first always), by consistency; the others are answered
// ResourceExhausted. total is the bytes they need.
func (s *kvServer) grantLarge(b *streamBatch, large []largeGet) (granted [2][]largeGet, total int) {
	budget := s.limits.MaxStreamBytes
	for _, g := range large {
		cost := g.size + len(b.calls[g.call].GetGet().GetKey()) + resultOverhead
		if total > 0 && total+cost > budget {
			setError(b.out.Results[g.call], connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
				"stream: the values asked for in one message pass the stream's %d-byte budget; ask for this key in another message or with Get", budget)))
			continue
		}
		total += cost
		granted[g.mode] = append(granted[g.mode], g)
	}
	return granted, total
}

// readGranted reads the granted large values of consistency modes[m] in a
// second pass. It reads local state: the first pass proved consistency (a
// linearizable one waited until this node applied the leader's commit
// index, and local state only moves on from there), so it needs no second
// ReadIndex. A value that grew past its first-pass size since is not read:
// ResourceExhausted too.
func (s *kvServer) readGranted(ctx context.Context, b *streamBatch, m int, gs []largeGet) {
	qs := make([]statemachine.GetQuery, len(gs))
	for j, g := range gs {
		qs[j] = statemachine.GetQuery{Key: b.calls[g.call].GetGet().GetKey(), ValueLimit: g.size}
	}
	vs, err := s.store.ReadAll(ctx, qs, node.Serializable)
	if err != nil {
		vs, err = s.store.ReadAll(ctx, qs, modes[m]) // e.g. not ready for local reads
	}
	for j, g := range gs {
		res := b.out.Results[g.call]
		if err != nil {
			setError(res, toConnect(err))
			continue
		}
		switch r := vs[j]; {
		case r.KV != nil && r.ValueSize > g.size:
			setError(res, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
				"stream: the value of key %q grew while it was read; ask for it again", r.KV.Key)))
		default:
			answerGet(res, b.calls[g.call].GetGet(), r)
		}
	}
}

var modes = [2]node.ReadMode{node.Linearizable, node.Serializable}

func modeIndex(m node.ReadMode) int {
	if m == node.Serializable {
		return 1
	}
	return 0
}

// setError puts err, as the unary call would have returned it, into res.
func setError(res *kvdv1.StreamResult, err error) {
	e := &kvdv1.StreamError{Code: uint32(connect.CodeOf(err)), Message: err.Error()}
	var ce *connect.Error
	if errors.As(err, &ce) {
		e.Message = ce.Message()
		if ce.Code() == connect.CodeFailedPrecondition {
			for _, d := range ce.Details() {
				if kv, ok := detailKV(d); ok {
					rev := kv.ModRevision
					e.CurrentModRevision = &rev
				}
			}
		}
	}
	res.Response = &kvdv1.StreamResult_Error{Error: e}
}

func detailKV(d *connect.ErrorDetail) (*kvdv1.KeyValue, bool) {
	v, err := d.Value()
	if err != nil {
		return nil, false
	}
	kv, ok := v.(*kvdv1.KeyValue)
	return kv, ok
}
