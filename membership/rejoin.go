package membership

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// RanBefore asks the seeds (members' API addresses) whether replica id has
// already run in a formed cluster: a member's view (Cluster.Members) lists
// it with a published API address (a member publishes its metadata only
// once it has started and caught up), or lists it as removed. It returns
// who says so, or "" when no peer does. Nodes starting together for the
// first time never say so (no one has published id's metadata), so they
// still form; a peer without a view (no quorum without this node, or still
// starting) cannot tell either way, and is left out.
func RanBefore(ctx context.Context, d PeerDialer, seeds []string, id ReplicaID) string {
	says := make([]string, len(seeds))
	var wg sync.WaitGroup
	for i, a := range seeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			v, err := d.View(cctx, a)
			if err != nil {
				return
			}
			if v.Removed[id] {
				says[i] = fmt.Sprintf("the member at %s lists replica %d as removed", a, id)
				return
			}
			if m, ok := v.member(id); ok && m.APIAddr != "" {
				says[i] = fmt.Sprintf("the member at %s lists replica %d as a %s that has run (API address %s)", a, id, m.Role, m.APIAddr)
			}
		}()
	}
	wg.Wait()
	for _, s := range says {
		if s != "" {
			return s
		}
	}
	return ""
}

// RemoveOld has a member remove old, this node's previous replica ID, before
// the node joins under a new one at the same Raft address (--rejoin). It asks
// the seeds in turn, with backoff between rounds, until one removes it (or
// says it is no member), one refuses for good (wrong secret), or ctx ends.
// The quorum guard still applies: a removal that would leave the reachable
// voters short of a quorum is refused, and retried until they are back.
func RemoveOld(ctx context.Context, d PeerDialer, seeds func() []string, old ReplicaID, log *slog.Logger) error {
	seed, err := askSeeds(ctx, seeds, log.With("wait", "for a member to remove this node's old replica ID", "old_replica", uint64(old)),
		func(ctx context.Context, seed string) error { return d.Remove(ctx, seed, old) })
	if err != nil {
		return fmt.Errorf("remove old replica %d %w", old, err)
	}
	log.Info("the old replica ID of this node is no member any more", "old_replica", uint64(old), "via", seed)
	return nil
}
