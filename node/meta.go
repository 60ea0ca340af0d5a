package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/statemachine"
)

// Member metadata: each node writes member/<id> = the JSON of metaRow into
// the state machine's reserved metadata keyspace (OpMetaPut), once caught
// up. Rows are read by every node of every version, so the format only
// grows: a field may be added (older readers ignore it), never renamed or
// given a new meaning; a change that older readers must not misread bumps
// metaVersion, and a reader skips a row newer than it knows.

const metaMemberPrefix = "member/"

// metaVersion is the version this code writes. A row without a version is
// version 1 (written before versions existed) and stays readable.
const metaVersion = 1

// metaRow is the stored form of membership.Meta.
type metaRow struct {
	Version int `json:"version,omitempty"`
	membership.Meta
}

func metaMemberKey(id membership.ReplicaID) []byte {
	return strconv.AppendUint([]byte(metaMemberPrefix), uint64(id), 10)
}

func encodeMeta(m membership.Meta) ([]byte, error) {
	return json.Marshal(metaRow{Version: metaVersion, Meta: m})
}

// decodeMeta reads a row: the member's ID from its key and the metadata
// from its value. It fails on a row it cannot read or whose version is
// newer than metaVersion.
func decodeMeta(key, value []byte) (membership.ReplicaID, membership.Meta, error) {
	id, err := strconv.ParseUint(string(key[len(metaMemberPrefix):]), 10, 64)
	if err != nil {
		return 0, membership.Meta{}, fmt.Errorf("key is not member/<replica id>: %v", err)
	}
	var row metaRow
	if err := json.Unmarshal(value, &row); err != nil {
		return 0, membership.Meta{}, err
	}
	if row.Version == 0 {
		row.Version = 1
	}
	if row.Version > metaVersion {
		return 0, membership.Meta{}, fmt.Errorf("version %d is newer than this node reads (%d): upgrade this node", row.Version, metaVersion)
	}
	return membership.ReplicaID(id), row.Meta, nil
}

// Metas reads every member's replicated metadata from the local state
// machine (it may lag; the membership is the authority on who is a member).
// A row that cannot be read is left out, and logged at ERROR once per row
// and revision: a member without its addresses cannot be reached.
func (n *Node) Metas(ctx context.Context) (map[membership.ReplicaID]membership.Meta, error) {
	v, err := n.nh.StaleRead(ShardID, statemachine.RangeQuery{
		Start: []byte(metaMemberPrefix), End: statemachine.PrefixEnd([]byte(metaMemberPrefix)), Meta: true,
	})
	if err != nil {
		return nil, fmt.Errorf("read member metadata: %w", err)
	}
	out := map[membership.ReplicaID]membership.Meta{}
	for _, kv := range v.(statemachine.RangeResult).KVs {
		id, m, err := decodeMeta(kv.Key, kv.Value)
		if err != nil {
			if n.badMetas.first(string(kv.Key), kv.ModRevision) {
				n.log.Error("member metadata row unreadable: the member is left out of this node's view until the row is rewritten",
					"key", string(kv.Key), "revision", kv.ModRevision, "err", err, "value", string(kv.Value))
			}
			continue
		}
		out[id] = m
	}
	return out, nil
}

// PutMeta writes a member's metadata through Raft.
func (n *Node) PutMeta(ctx context.Context, id membership.ReplicaID, m membership.Meta) error {
	val, err := encodeMeta(m)
	if err != nil {
		return err
	}
	_, err = n.Propose(ctx, []statemachine.Command{{Ops: []statemachine.Op{{Type: statemachine.OpMetaPut, Key: metaMemberKey(id), Value: val}}}})
	return err
}

// publishMeta makes sure the replicated metadata has this node's addresses.
func (n *Node) publishMeta(ctx context.Context) {
	want := membership.Meta{RaftAddr: n.cfg.RaftAddr, APIAddr: n.cfg.APIAddr, Origin: n.id.Origin,
		TokenHash: membership.HashToken(n.id.JoinToken)}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		metas, err := n.Metas(ctx)
		if err == nil {
			if metas[n.id.ReplicaID] == want {
				return
			}
			if err = n.PutMeta(ctx, n.id.ReplicaID, want); err == nil {
				n.log.Info("published member metadata", "api_addr", want.APIAddr)
				if n.ctrl != nil {
					n.ctrl.Notify() // refresh the members view with it
				}
				return
			}
		}
		if errors.Is(err, ErrStopped) {
			return
		}
		n.log.Debug("publish member metadata", "err", err)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// rowLog remembers the revision of each row already reported, so that a
// bad row is logged once, not on every read (Metas runs every probe).
type rowLog struct {
	mu   sync.Mutex
	seen map[string]uint64
}

// first reports whether key at revision was not reported yet, and notes it.
func (r *rowLog) first(key string, revision uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]uint64{}
	}
	if rev, ok := r.seen[key]; ok && rev == revision {
		return false
	}
	r.seen[key] = revision
	return true
}
