package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// KeyValue is one key with its value and revisions. A revision is the Raft
// index of the write that applied it.
type KeyValue struct {
	Key   []byte
	Value []byte // nil for keys-only ranges
	// CreateRevision is the revision that created the key (reset when it is
	// deleted and put again).
	CreateRevision uint64
	// ModRevision is the revision of the last write to the key: pass it to
	// IfModRevision for a compare-and-swap.
	ModRevision uint64
	// Version is the number of puts since the key was created.
	Version uint64
}

// PutResult is the outcome of a Put.
type PutResult struct {
	// Revision is the revision of this write: the key's new ModRevision.
	Revision uint64
}

// DeleteResult is the outcome of a Delete.
type DeleteResult struct {
	Revision uint64
	// Deleted is false when the key did not exist.
	Deleted bool
}

// WriteOption modifies a Put or Delete.
type WriteOption func(*writeOptions)

type writeOptions struct {
	ifModRevision *uint64
}

// IfModRevision makes a Put or Delete conditional: it is applied only if the
// key's ModRevision equals rev (0: only if the key does not exist), and fails
// with ErrCompareFailed otherwise.
func IfModRevision(rev uint64) WriteOption {
	return func(o *writeOptions) { o.ifModRevision = &rev }
}

// ReadOption modifies a Get or Scan.
type ReadOption func(*readOptions)

type readOptions struct {
	serializable bool
}

// Serializable reads from the answering node's local state: faster, but it
// may miss writes acknowledged moments ago. The default is linearizable.
func Serializable() ReadOption {
	return func(o *readOptions) { o.serializable = true }
}

func consistency(serializable bool) kvdv1.Consistency {
	if serializable {
		return kvdv1.Consistency_CONSISTENCY_SERIALIZABLE
	}
	return kvdv1.Consistency_CONSISTENCY_LINEARIZABLE
}

// Put sets key to value and returns the write's revision. It is retried
// only when the request provably was not applied; see OutcomeUnknown.
func (c *Client) Put(ctx context.Context, key, value []byte, opts ...WriteOption) (PutResult, error) {
	var o writeOptions
	for _, opt := range opts {
		opt(&o)
	}
	req := &kvdv1.PutRequest{Key: key, Value: value, IfModRevision: o.ifModRevision}
	return do(ctx, c, call{op: opPut, key: key, write: true},
		func(ctx context.Context, ep *endpoint) (PutResult, error) {
			if c.cfg.streams() {
				r, err := ep.liveStream().do(ctx, &kvdv1.StreamCall{Request: &kvdv1.StreamCall_Put{Put: req}}, key)
				if err != nil {
					return PutResult{}, err
				}
				return PutResult{Revision: r.GetPut().GetRevision()}, nil
			}
			resp, err := ep.kv.Put(ctx, connect.NewRequest(req))
			if err != nil {
				return PutResult{}, err
			}
			return PutResult{Revision: resp.Msg.GetRevision()}, nil
		})
}

// Get reads key. A missing key returns an error matching ErrNotFound.
func (c *Client) Get(ctx context.Context, key []byte, opts ...ReadOption) (*KeyValue, error) {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	req := &kvdv1.GetRequest{Key: key, Consistency: consistency(o.serializable)}
	return do(ctx, c, call{op: opGet, key: key},
		func(ctx context.Context, ep *endpoint) (*KeyValue, error) {
			if c.cfg.streams() {
				r, err := ep.liveStream().do(ctx, &kvdv1.StreamCall{Request: &kvdv1.StreamCall_Get{Get: req}}, key)
				if err == nil {
					kv := fromProto(r.GetGet().GetKv())
					return &kv, nil
				}
				// ResourceExhausted: the values asked for in one stream
				// message passed the node's budget; read this one alone.
				if connect.CodeOf(err) != connect.CodeResourceExhausted {
					return nil, err
				}
			}
			resp, err := ep.kv.Get(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			kv := fromProto(resp.Msg.GetKv())
			return &kv, nil
		})
}

// Delete removes key. Deleting a missing key succeeds with Deleted false.
func (c *Client) Delete(ctx context.Context, key []byte, opts ...WriteOption) (DeleteResult, error) {
	var o writeOptions
	for _, opt := range opts {
		opt(&o)
	}
	req := &kvdv1.DeleteRequest{Key: key, IfModRevision: o.ifModRevision}
	return do(ctx, c, call{op: opDelete, key: key, write: true},
		func(ctx context.Context, ep *endpoint) (DeleteResult, error) {
			if c.cfg.streams() {
				r, err := ep.liveStream().do(ctx, &kvdv1.StreamCall{Request: &kvdv1.StreamCall_Delete{Delete: req}}, key)
				if err != nil {
					return DeleteResult{}, err
				}
				return DeleteResult{Revision: r.GetDelete().GetRevision(), Deleted: r.GetDelete().GetDeleted() > 0}, nil
			}
			resp, err := ep.kv.Delete(ctx, connect.NewRequest(req))
			if err != nil {
				return DeleteResult{}, err
			}
			return DeleteResult{Revision: resp.Msg.GetRevision(), Deleted: resp.Msg.GetDeleted() > 0}, nil
		})
}

// RangeOptions select keys for Range: either Prefix, or [Start, End) (End
// empty: to the end of the keyspace). Setting both is an error.
type RangeOptions struct {
	Prefix []byte
	Start  []byte
	End    []byte
	// Limit is the most keys to return; 0 means the server's maximum.
	Limit        int
	KeysOnly     bool
	Serializable bool
	// PageToken is a previous result's NextPageToken.
	PageToken []byte
}

// RangeResult is one page of keys, in key order.
type RangeResult struct {
	KVs []KeyValue
	// More is true when keys remain: pass NextPageToken as
	// RangeOptions.PageToken to continue.
	More          bool
	NextPageToken []byte
	// Revision is the applied index of the node that served the read.
	Revision uint64
}

// Range reads one page of keys.
func (c *Client) Range(ctx context.Context, opts RangeOptions) (*RangeResult, error) {
	if opts.Limit < 0 {
		return nil, invalidArgument(opRange, nil, fmt.Sprintf("RangeOptions.Limit (%d) must be >= 0", opts.Limit))
	}
	req := &kvdv1.RangeRequest{
		Start:       opts.Start,
		End:         opts.End,
		Prefix:      opts.Prefix,
		Limit:       uint32(min(opts.Limit, math.MaxUint32)),
		KeysOnly:    opts.KeysOnly,
		Consistency: consistency(opts.Serializable),
		PageToken:   opts.PageToken,
	}
	return do(ctx, c, call{op: opRange},
		func(ctx context.Context, ep *endpoint) (*RangeResult, error) {
			resp, err := ep.kv.Range(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			res := &RangeResult{
				KVs:           make([]KeyValue, 0, len(resp.Msg.GetKvs())),
				More:          resp.Msg.GetMore(),
				NextPageToken: resp.Msg.GetNextPageToken(),
				Revision:      resp.Msg.GetRevision(),
			}
			for _, kv := range resp.Msg.GetKvs() {
				res.KVs = append(res.KVs, fromProto(kv))
			}
			return res, nil
		})
}

// RangeAll reads up to limit keys (all when limit is 0) selected by opts,
// following page tokens. Each page is a separate read, so a long scan is not
// a snapshot: keys written meanwhile may or may not appear.
func (c *Client) RangeAll(ctx context.Context, opts RangeOptions, limit int) ([]KeyValue, error) {
	if limit < 0 {
		return nil, invalidArgument(opRange, nil, fmt.Sprintf("limit (%d) must be >= 0", limit))
	}
	var out []KeyValue
	for {
		opts.Limit = 0
		if limit > 0 {
			opts.Limit = limit - len(out)
		}
		res, err := c.Range(ctx, opts)
		if err != nil {
			return out, err
		}
		out = append(out, res.KVs...)
		done := !res.More || len(res.NextPageToken) == 0 ||
			bytes.Equal(res.NextPageToken, opts.PageToken) || (limit > 0 && len(out) >= limit)
		if done {
			break
		}
		opts.PageToken = res.NextPageToken
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Scan returns up to limit keys with prefix (all when limit is 0), in key
// order, following page tokens; see RangeAll.
func (c *Client) Scan(ctx context.Context, prefix []byte, limit int, opts ...ReadOption) ([]KeyValue, error) {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	return c.RangeAll(ctx, RangeOptions{Prefix: prefix, Serializable: o.serializable}, limit)
}

// Compare is a Txn condition: Key's mod revision equals ModRevision (0: the
// key does not exist).
type Compare struct {
	Key         []byte
	ModRevision uint64
}

// Op is one write of a Txn; build it with OpPut or OpDelete.
type Op struct {
	del        bool
	key, value []byte
}

// OpPut is a Txn op that sets key to value.
func OpPut(key, value []byte) Op { return Op{key: key, value: value} }

// OpDelete is a Txn op that removes key.
func OpDelete(key []byte) Op { return Op{del: true, key: key} }

// TxnResult is the outcome of a Txn.
type TxnResult struct {
	// Succeeded is false when a compare did not hold; nothing was written.
	Succeeded bool
	Revision  uint64
	// CurrentModRevisions, when not Succeeded, holds each compared key's
	// actual mod revision (0 = absent), in the order of the compares.
	CurrentModRevisions []uint64
}

// Txn applies ops atomically if every compare holds. A failed compare is not
// an error: it returns Succeeded false.
func (c *Client) Txn(ctx context.Context, compares []Compare, ops []Op) (TxnResult, error) {
	req := &kvdv1.TxnRequest{}
	for _, cmp := range compares {
		req.Compares = append(req.Compares, &kvdv1.Compare{Key: cmp.Key, ModRevision: cmp.ModRevision})
	}
	for _, op := range ops {
		if op.del {
			req.Ops = append(req.Ops, &kvdv1.TxnOp{Op: &kvdv1.TxnOp_Delete{Delete: &kvdv1.DeleteRequest{Key: op.key}}})
		} else {
			req.Ops = append(req.Ops, &kvdv1.TxnOp{Op: &kvdv1.TxnOp_Put{Put: &kvdv1.PutRequest{Key: op.key, Value: op.value}}})
		}
	}
	return do(ctx, c, call{op: opTxn, write: true},
		func(ctx context.Context, ep *endpoint) (TxnResult, error) {
			if c.cfg.streams() {
				r, err := ep.liveStream().do(ctx, &kvdv1.StreamCall{Request: &kvdv1.StreamCall_Txn{Txn: req}}, nil)
				if err != nil {
					return TxnResult{}, err
				}
				t := r.GetTxn()
				return TxnResult{Succeeded: t.GetSucceeded(), Revision: t.GetRevision(), CurrentModRevisions: t.GetCurrentModRevisions()}, nil
			}
			resp, err := ep.kv.Txn(ctx, connect.NewRequest(req))
			if err != nil {
				return TxnResult{}, err
			}
			return TxnResult{
				Succeeded:           resp.Msg.GetSucceeded(),
				Revision:            resp.Msg.GetRevision(),
				CurrentModRevisions: resp.Msg.GetCurrentModRevisions(),
			}, nil
		})
}

func fromProto(kv *kvdv1.KeyValue) KeyValue {
	return KeyValue{
		Key:            kv.GetKey(),
		Value:          kv.GetValue(),
		CreateRevision: kv.GetCreateRevision(),
		ModRevision:    kv.GetModRevision(),
		Version:        kv.GetVersion(),
	}
}

// invalidArgument is the error for a request rejected before sending.
func invalidArgument(op string, key []byte, msg string) error {
	return &Error{Op: op, Key: key, Err: connect.NewError(connect.CodeInvalidArgument, errors.New(msg)),
		kind: failDefinite}
}
