package rpc

import (
	"context"
	"errors"
	"io"
	"sync"

	"connectrpc.com/connect"

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
)

// Stream serves calls arriving over one bidirectional stream. Each
// StreamRequest is served on its own goroutine, so a slow write does not
// hold up the calls behind it; its writes go to the node's batcher, where
// they share Raft entries with every other write in flight, and its gets
// share one ReadIndex. Results go back as one StreamResponse per request.
func (s *kvServer) Stream(ctx context.Context, st *connect.BidiStream[kvdv1.StreamRequest, kvdv1.StreamResponse]) error {
	var (
		sendMu  sync.Mutex
		sendErr error
		wg      sync.WaitGroup
		slots   = make(chan struct{}, maxStreamInflight)
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
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := s.serveCalls(ctx, req.Calls)
			sendMu.Lock()
			if sendErr == nil {
				sendErr = st.Send(resp)
			}
			sendMu.Unlock()
			<-slots
		}()
	}
}

// serveCalls runs the calls of one StreamRequest: writes through
// WriteAll, gets grouped by consistency through ReadAll, concurrently.
func (s *kvServer) serveCalls(ctx context.Context, calls []*kvdv1.StreamCall) *kvdv1.StreamResponse {
	out := &kvdv1.StreamResponse{Results: make([]*kvdv1.StreamResult, len(calls))}
	var (
		cmds  []statemachine.Command
		wrote []int // index in calls of each cmd
		reads [2]struct {
			qs  []interface{}
			idx []int
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
	return out
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
