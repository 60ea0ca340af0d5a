package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

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
	var (
		sendMu   sync.Mutex
		sendErr  error
		wg       sync.WaitGroup
		slots    = make(chan struct{}, maxStreamInflight)
		requests = newByteBudget(int64(s.limits.MaxStreamBytes))
		values   = newByteBudget(int64(s.limits.MaxStreamBytes))
	)
	defer wg.Wait()
	for {
		req, err := st.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, large := s.serveCalls(ctx, req.Calls, values)
			sendMu.Lock()
			if sendErr == nil {
				sendErr = st.Send(resp)
			}
			sendMu.Unlock()
			values.release(large)
			requests.release(held)
			<-slots
		}()
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

// largeGet is a get whose value was too long to read in the first pass.
type largeGet struct {
	call int // index in the request's calls
	mode int // index in modes
	size int // value bytes seen in the first pass
}

// serveCalls runs the calls of one StreamRequest: writes through
// WriteAll, gets grouped by consistency through ReadAll, concurrently; then
// the values of large gets within the values budget. It returns the
// response and the bytes it holds of values, to be released once sent.
func (s *kvServer) serveCalls(ctx context.Context, calls []*kvdv1.StreamCall, values *byteBudget) (*kvdv1.StreamResponse, int64) {
	out := &kvdv1.StreamResponse{Results: make([]*kvdv1.StreamResult, len(calls))}
	var (
		cmds  []statemachine.Command
		wrote []int // index in calls of each cmd
		reads [2]struct {
			qs    []statemachine.GetQuery
			idx   []int
			large []largeGet
		}
	)
	for i, c := range calls {
		out.Results[i] = &kvdv1.StreamResult{Id: c.Id}
		var (
			cmd statemachine.Command
			err error
		)
		switch r := c.Request.(type) {
		case *kvdv1.StreamCall_Put:
			cmd, err = s.putCommand(r.Put)
		case *kvdv1.StreamCall_Delete:
			cmd, err = s.deleteCommand(r.Delete)
		case *kvdv1.StreamCall_Txn:
			cmd, err = s.txnCommand(r.Txn)
		case *kvdv1.StreamCall_Get:
			q, mode, qerr := s.getQuery(r.Get)
			q.ValueLimit = inlineValueBytes
			if qerr == nil {
				g := &reads[modeIndex(mode)]
				g.qs = append(g.qs, q)
				g.idx = append(g.idx, i)
				continue
			}
			err = qerr
		default:
			err = invalid("stream call %d: set put, get, delete or txn", c.Id)
		}
		if err != nil {
			setError(out.Results[i], err)
			continue
		}
		cmds = append(cmds, cmd)
		wrote = append(wrote, i)
	}

	var wg sync.WaitGroup
	for m := range reads {
		g := &reads[m]
		if len(g.qs) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			vs, err := s.store.ReadAll(ctx, g.qs, modes[m])
			for j, i := range g.idx {
				res := out.Results[i]
				if err != nil {
					setError(res, toConnect(err))
					continue
				}
				if r := vs[j]; r.KV != nil && r.ValueSize > inlineValueBytes {
					g.large = append(g.large, largeGet{call: i, mode: m, size: r.ValueSize})
					continue
				}
				get, err := getResponse(calls[i].GetGet(), vs[j])
				if err != nil {
					setError(res, err)
					continue
				}
				res.Response = &kvdv1.StreamResult_Get{Get: get}
			}
		}()
	}
	if len(cmds) > 0 {
		results, errs := s.store.WriteAll(ctx, cmds)
		for j, i := range wrote {
			res := out.Results[i]
			if errs[j] != nil {
				setError(res, toConnect(errs[j]))
				continue
			}
			r := results[j]
			switch c := calls[i].Request.(type) {
			case *kvdv1.StreamCall_Put:
				put, err := putResponse(c.Put, r)
				if err != nil {
					setError(res, err)
					continue
				}
				res.Response = &kvdv1.StreamResult_Put{Put: put}
			case *kvdv1.StreamCall_Delete:
				del, err := deleteResponse(c.Delete, r)
				if err != nil {
					setError(res, err)
					continue
				}
				res.Response = &kvdv1.StreamResult_Delete{Delete: del}
			case *kvdv1.StreamCall_Txn:
				res.Response = &kvdv1.StreamResult_Txn{Txn: txnResponse(r)}
			}
		}
	}
	wg.Wait()
	large := append(reads[0].large, reads[1].large...)
	if len(large) == 0 {
		return out, 0
	}
	sort.Slice(large, func(a, b int) bool { return large[a].call < large[b].call })
	return out, s.readLarge(ctx, calls, out, large, values)
}

// readLarge reads the values of large gets, in call order, as far as one
// values budget goes (the first always): each response is one message, so
// a message asking for more is answered ResourceExhausted for the rest,
// which clients ask for again in another message or with Get. It takes the
// budget before it reads and returns what it took. The second pass reads
// local state: it needs no second ReadIndex. A value that grew past
// its first-pass size since is not read: ResourceExhausted too.
func (s *kvServer) readLarge(ctx context.Context, calls []*kvdv1.StreamCall, out *kvdv1.StreamResponse, large []largeGet, values *byteBudget) int64 {
	var (
		budget  = s.limits.MaxStreamBytes
		total   int
		granted [2][]largeGet
	)
	for _, g := range large {
		cost := g.size + len(calls[g.call].GetGet().GetKey()) + resultOverhead
		if total > 0 && total+cost > budget {
			setError(out.Results[g.call], connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
				"stream: the values asked for in one message pass the stream's %d-byte budget; ask for this key in another message or with Get", budget)))
			continue
		}
		total += cost
		granted[g.mode] = append(granted[g.mode], g)
	}
	held, err := values.acquire(ctx, int64(total))
	if err != nil {
		for _, gs := range granted {
			for _, g := range gs {
				setError(out.Results[g.call], toConnect(err))
			}
		}
		return 0
	}
	for m, gs := range granted {
		if len(gs) == 0 {
			continue
		}
		qs := make([]statemachine.GetQuery, len(gs))
		for j, g := range gs {
			qs[j] = statemachine.GetQuery{Key: calls[g.call].GetGet().GetKey(), ValueLimit: g.size}
		}
		// The first pass proved consistency: a linearizable one waited until
		// this node applied the leader's commit index, and local state only
		// moves on from there, so reading it again is still linearizable.
		vs, err := s.store.ReadAll(ctx, qs, node.Serializable)
		if err != nil {
			vs, err = s.store.ReadAll(ctx, qs, modes[m]) // e.g. not ready for local reads
		}
		for j, g := range gs {
			res := out.Results[g.call]
			if err != nil {
				setError(res, toConnect(err))
				continue
			}
			if r := vs[j]; r.KV != nil && r.ValueSize > g.size {
				setError(res, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
					"stream: the value of key %q grew while it was read; ask for it again", r.KV.Key)))
				continue
			}
			get, err := getResponse(calls[g.call].GetGet(), vs[j])
			if err != nil {
				setError(res, err)
				continue
			}
			res.Response = &kvdv1.StreamResult_Get{Get: get}
		}
	}
	return held
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
