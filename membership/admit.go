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
// metadata (API address) through Raft, then proposes the config change with
// the membership's config-change ID. Idempotent: a replica that is already a
// member at the same address is accepted again (the joiner may have crashed
// after a successful Join).
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
			return h.PutMeta(ctx, req.ReplicaID, Meta{RaftAddr: req.RaftAddr, APIAddr: req.APIAddr, Origin: OriginJoin})
		}
		if err := h.PutMeta(ctx, req.ReplicaID, Meta{RaftAddr: req.RaftAddr, APIAddr: req.APIAddr, Origin: OriginJoin}); err != nil {
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
