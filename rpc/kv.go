package rpc

import (
	"bytes"
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/node"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
	"github.com/kvd-project/kvd/statemachine"
)

// Store is what the KV handlers need from a node.
type Store interface {
	// Write replicates one command, possibly sharing a Raft entry with
	// concurrent writes of other keys.
	Write(ctx context.Context, cmd statemachine.Command) (statemachine.Result, error)
	// WriteAll is Write for independent commands, each with its own outcome.
	WriteAll(ctx context.Context, cmds []statemachine.Command) ([]statemachine.Result, []error)
	Get(ctx context.Context, q statemachine.GetQuery, mode node.ReadMode) (statemachine.GetResult, error)
	Range(ctx context.Context, q statemachine.RangeQuery, mode node.ReadMode) (statemachine.RangeResult, error)
	// ReadAll runs gets behind one consistency check.
	ReadAll(ctx context.Context, qs []statemachine.GetQuery, mode node.ReadMode) ([]statemachine.GetResult, error)
}

type kvServer struct {
	store   Store
	limits  Limits
	metrics *rpcMetrics // of the calls a stream carries
}

// NewKVServer returns the kvd.v1.KV handler implementation.
func NewKVServer(store Store, limits Limits) kvdv1connect.KVHandler {
	return &kvServer{store: store, limits: limits, metrics: newRPCMetrics(nil)}
}

func readMode(c kvdv1.Consistency) (node.ReadMode, error) {
	switch c {
	case kvdv1.Consistency_CONSISTENCY_UNSPECIFIED, kvdv1.Consistency_CONSISTENCY_LINEARIZABLE:
		return node.Linearizable, nil
	case kvdv1.Consistency_CONSISTENCY_SERIALIZABLE:
		return node.Serializable, nil
	}
	return 0, invalid("unknown consistency %d: use LINEARIZABLE or SERIALIZABLE", c)
}

// write runs one command and returns its result.
func (s *kvServer) write(ctx context.Context, cmd statemachine.Command) (statemachine.Result, error) {
	r, err := s.store.Write(ctx, cmd)
	if err != nil {
		return statemachine.Result{}, toConnect(err)
	}
	return r, nil
}

// compareFailed is the FailedPrecondition of a failed CAS. Its detail, a
// KeyValue with only key and mod_revision (0 = absent), tells clients the
// current revision without parsing the message.
func compareFailed(key []byte, want, got uint64) error {
	var ce *connect.Error
	switch {
	case got == 0:
		ce = connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("compare failed: key %q does not exist (expected mod revision %d)", key, want))
	case want == 0:
		ce = connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("compare failed: key %q exists with mod revision %d (expected it absent)", key, got))
	default:
		ce = connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("compare failed: key %q has mod revision %d, not %d", key, got, want))
	}
	if d, err := connect.NewErrorDetail(&kvdv1.KeyValue{Key: key, ModRevision: got}); err == nil {
		ce.AddDetail(d)
	}
	return ce
}

func (s *kvServer) putCommand(m *kvdv1.PutRequest) (statemachine.Command, error) {
	if err := s.limits.checkKey("put", m.Key); err != nil {
		return statemachine.Command{}, err
	}
	if err := s.limits.checkValue("put", m.Value); err != nil {
		return statemachine.Command{}, err
	}
	cmd := statemachine.Command{Ops: []statemachine.Op{{Type: statemachine.OpPut, Key: m.Key, Value: m.Value}}}
	if m.IfModRevision != nil {
		cmd.Compares = []statemachine.Compare{{Key: m.Key, ModRevision: *m.IfModRevision}}
	}
	return cmd, nil
}

func putResponse(m *kvdv1.PutRequest, r statemachine.Result) (*kvdv1.PutResponse, error) {
	if !r.Succeeded {
		return nil, compareFailed(m.Key, *m.IfModRevision, first(r.Current))
	}
	return &kvdv1.PutResponse{Revision: r.Revision}, nil
}

func (s *kvServer) Put(ctx context.Context, req *connect.Request[kvdv1.PutRequest]) (*connect.Response[kvdv1.PutResponse], error) {
	cmd, err := s.putCommand(req.Msg)
	if err != nil {
		return nil, err
	}
	r, err := s.write(ctx, cmd)
	if err != nil {
		return nil, err
	}
	out, err := putResponse(req.Msg, r)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

func (s *kvServer) deleteCommand(m *kvdv1.DeleteRequest) (statemachine.Command, error) {
	if err := s.limits.checkKey("delete", m.Key); err != nil {
		return statemachine.Command{}, err
	}
	cmd := statemachine.Command{Ops: []statemachine.Op{{Type: statemachine.OpDelete, Key: m.Key}}}
	if m.IfModRevision != nil {
		cmd.Compares = []statemachine.Compare{{Key: m.Key, ModRevision: *m.IfModRevision}}
	}
	return cmd, nil
}

func deleteResponse(m *kvdv1.DeleteRequest, r statemachine.Result) (*kvdv1.DeleteResponse, error) {
	if !r.Succeeded {
		return nil, compareFailed(m.Key, *m.IfModRevision, first(r.Current))
	}
	return &kvdv1.DeleteResponse{Revision: r.Revision, Deleted: r.Deleted}, nil
}

func (s *kvServer) Delete(ctx context.Context, req *connect.Request[kvdv1.DeleteRequest]) (*connect.Response[kvdv1.DeleteResponse], error) {
	cmd, err := s.deleteCommand(req.Msg)
	if err != nil {
		return nil, err
	}
	r, err := s.write(ctx, cmd)
	if err != nil {
		return nil, err
	}
	out, err := deleteResponse(req.Msg, r)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

func first(xs []uint64) uint64 {
	if len(xs) == 0 {
		return 0
	}
	return xs[0]
}

func (s *kvServer) getQuery(m *kvdv1.GetRequest) (statemachine.GetQuery, node.ReadMode, error) {
	if err := s.limits.checkKey("get", m.Key); err != nil {
		return statemachine.GetQuery{}, 0, err
	}
	mode, err := readMode(m.Consistency)
	if err != nil {
		return statemachine.GetQuery{}, 0, err
	}
	return statemachine.GetQuery{Key: m.Key}, mode, nil
}

func getResponse(m *kvdv1.GetRequest, res statemachine.GetResult) (*kvdv1.GetResponse, error) {
	if res.KV == nil {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("key %q not found", m.Key))
	}
	return &kvdv1.GetResponse{Kv: toProto(*res.KV), Revision: res.Revision}, nil
}

func (s *kvServer) Get(ctx context.Context, req *connect.Request[kvdv1.GetRequest]) (*connect.Response[kvdv1.GetResponse], error) {
	q, mode, err := s.getQuery(req.Msg)
	if err != nil {
		return nil, err
	}
	v, err := s.store.Get(ctx, q, mode)
	if err != nil {
		return nil, toConnect(err)
	}
	out, err := getResponse(req.Msg, v)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

func toProto(kv statemachine.KeyValue) *kvdv1.KeyValue {
	return &kvdv1.KeyValue{
		Key: kv.Key, Value: kv.Value,
		CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version,
	}
}

func (s *kvServer) Range(ctx context.Context, req *connect.Request[kvdv1.RangeRequest]) (*connect.Response[kvdv1.RangeResponse], error) {
	m := req.Msg
	mode, err := readMode(m.Consistency)
	if err != nil {
		return nil, err
	}
	start, end := m.Start, m.End
	if len(m.Prefix) > 0 {
		if len(m.Start) > 0 || len(m.End) > 0 {
			return nil, invalid("range: set either prefix or start/end, not both")
		}
		start, end = m.Prefix, statemachine.PrefixEnd(m.Prefix)
	}
	for what, k := range map[string][]byte{"start": start, "end": end, "page_token": m.PageToken} {
		if len(k) > s.limits.MaxKeySize+1 {
			return nil, invalid("range: %s is %d bytes; the maximum key size is %d bytes", what, len(k), s.limits.MaxKeySize)
		}
	}
	if len(end) > 0 && bytes.Compare(start, end) >= 0 {
		return nil, invalid("range: start %q is not below end %q", start, end)
	}
	if len(m.PageToken) > 0 {
		if bytes.Compare(m.PageToken, start) < 0 || (len(end) > 0 && bytes.Compare(m.PageToken, end) >= 0) {
			return nil, invalid("range: page_token is outside [start, end); pass the next_page_token of a response to the same range")
		}
		start = m.PageToken
	}
	limit := int(m.Limit)
	if limit == 0 {
		limit = s.limits.MaxRangeLimit
	}
	if limit > s.limits.MaxRangeLimit {
		return nil, invalid("range: limit %d exceeds the maximum range limit %d; page with next_page_token", limit, s.limits.MaxRangeLimit)
	}
	q := statemachine.RangeQuery{Start: start, End: end, Limit: limit, MaxBytes: s.limits.MaxRangeBytes, KeysOnly: m.KeysOnly}
	res, err := s.store.Range(ctx, q, mode)
	if err != nil {
		return nil, toConnect(err)
	}
	out := &kvdv1.RangeResponse{Kvs: make([]*kvdv1.KeyValue, len(res.KVs)), More: res.More, Revision: res.Revision}
	for i, kv := range res.KVs {
		out.Kvs[i] = toProto(kv)
	}
	if res.More && len(res.KVs) > 0 {
		last := res.KVs[len(res.KVs)-1].Key
		out.NextPageToken = append(append(make([]byte, 0, len(last)+1), last...), 0)
	}
	return connect.NewResponse(out), nil
}

func (s *kvServer) txnCommand(m *kvdv1.TxnRequest) (statemachine.Command, error) {
	var none statemachine.Command
	if n := len(m.Compares) + len(m.Ops); n > s.limits.MaxTxnOps {
		return none, invalid("txn: %d compares and ops; the maximum is %d", n, s.limits.MaxTxnOps)
	}
	if len(m.Ops) == 0 {
		return none, invalid("txn: no ops; add at least one put or delete")
	}
	cmd := statemachine.Command{
		Compares: make([]statemachine.Compare, len(m.Compares)),
		Ops:      make([]statemachine.Op, len(m.Ops)),
	}
	for i, c := range m.Compares {
		if err := s.limits.checkKey(fmt.Sprintf("txn compare %d", i), c.Key); err != nil {
			return none, err
		}
		cmd.Compares[i] = statemachine.Compare{Key: c.Key, ModRevision: c.ModRevision}
	}
	for i, op := range m.Ops {
		what := fmt.Sprintf("txn op %d", i)
		switch o := op.Op.(type) {
		case *kvdv1.TxnOp_Put:
			if err := s.limits.checkKey(what, o.Put.Key); err != nil {
				return none, err
			}
			if err := s.limits.checkValue(what, o.Put.Value); err != nil {
				return none, err
			}
			if o.Put.IfModRevision != nil {
				return none, invalid("%s: if_mod_revision is not allowed inside a txn; add a compare instead", what)
			}
			cmd.Ops[i] = statemachine.Op{Type: statemachine.OpPut, Key: o.Put.Key, Value: o.Put.Value}
		case *kvdv1.TxnOp_Delete:
			if err := s.limits.checkKey(what, o.Delete.Key); err != nil {
				return none, err
			}
			if o.Delete.IfModRevision != nil {
				return none, invalid("%s: if_mod_revision is not allowed inside a txn; add a compare instead", what)
			}
			cmd.Ops[i] = statemachine.Op{Type: statemachine.OpDelete, Key: o.Delete.Key}
		default:
			return none, invalid("%s: set put or delete", what)
		}
	}
	return cmd, nil
}

func txnResponse(r statemachine.Result) *kvdv1.TxnResponse {
	return &kvdv1.TxnResponse{Succeeded: r.Succeeded, Revision: r.Revision, CurrentModRevisions: r.Current}
}

func (s *kvServer) Txn(ctx context.Context, req *connect.Request[kvdv1.TxnRequest]) (*connect.Response[kvdv1.TxnResponse], error) {
	cmd, err := s.txnCommand(req.Msg)
	if err != nil {
		return nil, err
	}
	r, err := s.write(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(txnResponse(r)), nil
}
