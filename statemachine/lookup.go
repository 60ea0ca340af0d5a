package statemachine

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// KeyValue is one stored key with its revisions. CreateRevision and
// ModRevision are Raft indexes; Version counts puts since creation (1 after
// the put that created the key).
type KeyValue struct {
	Key            []byte
	Value          []byte
	CreateRevision uint64
	ModRevision    uint64
	Version        uint64
}

// GetQuery reads one key of the user keyspace, or of the metadata keyspace
// when Meta is set. Lookup returns a GetResult.
//
// ValueLimit > 0 leaves KV.Value nil when the value is longer than that, so
// that a caller with a memory budget learns the size (GetResult.ValueSize)
// before it holds the value.
type GetQuery struct {
	Key        []byte
	Meta       bool
	ValueLimit int
}

// GetResult answers a GetQuery. KV is nil when the key is absent; Revision
// is the applied index the read saw. ValueSize is the value's length, also
// when ValueLimit left KV.Value out.
type GetResult struct {
	KV        *KeyValue
	Revision  uint64
	ValueSize int
}

// RangeQuery reads the keys in [Start, End) in key order. A nil Start begins
// at the first key; a nil End runs to the end of the keyspace. Limit 0 means
// no limit. KeysOnly leaves Value nil. Lookup returns a RangeResult.
//
// MaxBytes > 0 caps the page in bytes of keys plus values (keys only with
// KeysOnly): the page stops before the key that would take it past
// MaxBytes, but always holds at least one key, so that paging progresses
// even when one value is larger than the cap. Values past the cap are never
// copied out of Pebble.
//
// To continue a limited range, query again with Start set to the last key
// returned plus a zero byte (append(last, 0)).
type RangeQuery struct {
	Start, End []byte
	Limit      int
	MaxBytes   int
	KeysOnly   bool
	Meta       bool
}

// RangeResult answers a RangeQuery. More reports that keys beyond Limit or
// MaxBytes exist in the range; Revision is the applied index the read saw.
type RangeResult struct {
	KVs      []KeyValue
	More     bool
	Revision uint64
}

// AppliedQuery asks for the applied index; Lookup returns a uint64.
type AppliedQuery struct{}

// PrefixEnd returns the smallest key greater than every key that has prefix,
// to be used as RangeQuery.End. It returns nil (the end of the keyspace)
// when there is no such key: prefix is empty or all 0xff.
func PrefixEnd(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xff {
			end := bytes.Clone(prefix[:i+1])
			end[i]++
			return end
		}
	}
	return nil
}

// Lookup answers a GetQuery, RangeQuery or AppliedQuery (values or
// pointers). Every answer is read from one consistent point in time, and
// its Revision is the applied index at that point. Lookup is safe
// concurrently with every other method and returns ErrClosed after Close.
func (s *StateMachine) Lookup(q interface{}) (interface{}, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.state != stateOpen {
		return nil, ErrClosed
	}
	switch q := q.(type) {
	case GetQuery:
		return s.get(&q)
	case *GetQuery:
		if q == nil {
			break
		}
		return s.get(q)
	case RangeQuery:
		return s.scan(&q)
	case *RangeQuery:
		if q == nil {
			break
		}
		return s.scan(q)
	case HistoryQuery:
		return s.history(&q)
	case *HistoryQuery:
		if q == nil {
			break
		}
		return s.history(q)
	case AppliedQuery, *AppliedQuery:
		return s.applied.Load(), nil
	case SavedSnapshotQuery:
		return s.savedSnapshot(q), nil
	}
	return nil, fmt.Errorf("%w: unsupported query type %T", ErrInvalidQuery, q)
}

func namespace(meta bool) byte {
	if meta {
		return nsMeta
	}
	return nsUser
}

func (s *StateMachine) get(q *GetQuery) (GetResult, error) {
	if len(q.Key) == 0 {
		return GetResult{}, fmt.Errorf("%w: empty key", ErrInvalidQuery)
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	rev, err := getUint64(snap, sysAppliedKey)
	if err != nil {
		return GetResult{}, err
	}
	ikey := append([]byte{namespace(q.Meta)}, q.Key...)
	v, closer, err := snap.Get(ikey)
	if errors.Is(err, pebble.ErrNotFound) {
		return GetResult{Revision: rev}, nil
	}
	if err != nil {
		return GetResult{}, fmt.Errorf("statemachine: get: %w", err)
	}
	defer closer.Close()
	m, val, err := decodeStored(v)
	if err != nil {
		return GetResult{}, fmt.Errorf("key %q: %w", q.Key, err)
	}
	omit := q.ValueLimit > 0 && len(val) > q.ValueLimit
	kv := makeKV(q.Key, m, val, omit)
	return GetResult{KV: &kv, Revision: rev, ValueSize: len(val)}, nil
}

func (s *StateMachine) scan(q *RangeQuery) (RangeResult, error) {
	if q.Limit < 0 || q.MaxBytes < 0 {
		return RangeResult{}, fmt.Errorf("%w: negative limit %d or max bytes %d", ErrInvalidQuery, q.Limit, q.MaxBytes)
	}
	ns := namespace(q.Meta)
	lower := append([]byte{ns}, q.Start...)
	upper := []byte{ns + 1}
	if q.End != nil {
		upper = append([]byte{ns}, q.End...)
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	rev, err := getUint64(snap, sysAppliedKey)
	if err != nil {
		return RangeResult{}, err
	}
	res := RangeResult{Revision: rev}
	if bytes.Compare(lower, upper) >= 0 {
		return res, nil
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return RangeResult{}, fmt.Errorf("statemachine: range: %w", err)
	}
	size := 0 // bytes of keys and values in res.KVs
	for valid := it.First(); valid; valid = it.Next() {
		if q.Limit > 0 && len(res.KVs) == q.Limit {
			res.More = true
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			break // it.Error reports it
		}
		key := it.Key()[1:]
		m, val, err := decodeStored(v)
		if err != nil {
			_ = it.Close()
			return RangeResult{}, fmt.Errorf("key %q: %w", key, err)
		}
		n := len(key)
		if !q.KeysOnly {
			n += len(val)
		}
		if q.MaxBytes > 0 && len(res.KVs) > 0 && size+n > q.MaxBytes {
			res.More = true
			break
		}
		size += n
		res.KVs = append(res.KVs, makeKV(key, m, val, q.KeysOnly))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return RangeResult{}, fmt.Errorf("statemachine: range: %w", err)
	}
	return res, nil
}

// makeKV builds a KeyValue that owns its memory from a decoded stored value;
// noValue leaves Value nil.
func makeKV(key []byte, m keyMeta, val []byte, noValue bool) KeyValue {
	kv := KeyValue{
		Key:            bytes.Clone(key),
		CreateRevision: m.create,
		ModRevision:    m.mod,
		Version:        m.version,
	}
	if !noValue {
		kv.Value = append(make([]byte, 0, len(val)), val...)
	}
	return kv
}
