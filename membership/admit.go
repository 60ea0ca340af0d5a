package membership

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lni/dragonboat/v4"
)

// Admit adds req's replica as an observer: it first records the member's
// metadata (API address, hash of its join token) through Raft, then
// proposes the config change with the membership's config-change ID.
// Idempotent for the same node only: a replica that is already a member at
// the same address is accepted again (the joiner may have crashed after a
// successful Join) if req carries the join token whose hash its metadata
// holds; anyone else gets ErrNotSameNode and the member is left untouched.
func Admit(ctx context.Context, h Host, req JoinRequest) error {
	if req.ReplicaID == 0 || req.RaftAddr == "" {
		return fmt.Errorf("%w: join needs a non-zero replica ID and a raft address", ErrBadFlags)
	}
	for attempt := 1; ; attempt++ {
		m, err := h.Membership(ctx)
		if err != nil {
			return err
		}
		if m.Removed[req.ReplicaID] {
			return fmt.Errorf("%w: replica %d was removed and can never rejoin under that ID; restart it with --rejoin", ErrRemoved, req.ReplicaID)
		}
		for id, addr := range allMembers(m) {
			if id != req.ReplicaID && sameAddr(addr, req.RaftAddr) {
				return fmt.Errorf("%w: raft address %s already belongs to replica %d; remove it first (kvctl members remove %d)",
					ErrBadFlags, req.RaftAddr, id, id)
			}
		}
		if addr, ok := allMembers(m)[req.ReplicaID]; ok {
			if !sameAddr(addr, req.RaftAddr) {
				return fmt.Errorf("%w: replica %d is a member at %s, not %s", ErrIdentityMismatch, req.ReplicaID, addr, req.RaftAddr)
			}
			return readmit(ctx, h, req)
		}
		if req.Token == "" {
			return fmt.Errorf("%w: join needs a join token (this kvd is older than the cluster's: upgrade it)", ErrBadFlags)
		}
		meta := Meta{RaftAddr: req.RaftAddr, APIAddr: req.APIAddr, Origin: OriginJoin, TokenHash: HashToken(req.Token)}
		if err := h.PutMeta(ctx, req.ReplicaID, meta); err != nil {
			return err
		}
		err = h.AddObserver(ctx, req.ReplicaID, req.RaftAddr, m.ConfigChangeID)
		if err == nil {
			return nil
		}
		// Rejected: another config change won the race (stale ID); busy:
		// one is pending. Read the membership again and retry.
		if !errors.Is(err, dragonboat.ErrRejected) && !errors.Is(err, dragonboat.ErrSystemBusy) || attempt >= 10 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
		}
	}
}

// readmit accepts a Join for an existing member only from that member: the
// membership was read linearizably, so the local metadata is at least as new
// as the member's admission.
func readmit(ctx context.Context, h Host, req JoinRequest) error {
	metas, err := h.Metas(ctx)
	if err != nil {
		return err
	}
	old := metas[req.ReplicaID]
	if !tokenMatches(old.TokenHash, req.Token) {
		return fmt.Errorf("%w: replica %d is already a member, and this join does not carry the join token "+
			"that node keeps in its identity.json; a new node must join under its own ID "+
			"(leave --node-id unset), and a node that lost its data dir restarts with --rejoin", ErrNotSameNode, req.ReplicaID)
	}
	want := Meta{RaftAddr: req.RaftAddr, APIAddr: req.APIAddr, Origin: OriginJoin, TokenHash: old.TokenHash}
	if old == want {
		return nil
	}
	return h.PutMeta(ctx, req.ReplicaID, want)
}

func allMembers(m Membership) map[ReplicaID]string {
	out := make(map[ReplicaID]string, len(m.Voters)+len(m.Observers))
	for id, a := range m.Voters {
		out[id] = a
	}
	for id, a := range m.Observers {
		out[id] = a
	}
	return out
}

// sameAddr compares addresses as Dragonboat does (trimmed, case-insensitive).
func sameAddr(a, b string) bool {
	return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
}
