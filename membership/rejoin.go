package membership

import (
	"context"
	"errors"
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
	backoff := 200 * time.Millisecond
	for round := 1; ; round++ {
		list := seeds()
		var errs []error
		for _, seed := range list {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := d.Remove(cctx, seed, old)
			cancel()
			if err == nil {
				log.Info("the old replica ID of this node is no member any more", "old_replica", uint64(old), "via", seed)
				return nil
			}
			if errors.Is(err, ErrJoinRefused) {
				return fmt.Errorf("remove old replica %d via %s: %w", old, seed, err)
			}
			errs = append(errs, fmt.Errorf("%s: %w", seed, err))
		}
		if len(list) == 0 {
			errs = append(errs, errors.New("no seed addresses (check --join)"))
		}
		if round == 1 || round%5 == 0 {
			log.Warn("waiting for a member to remove this node's old replica ID; retrying", "old_replica", uint64(old),
				"round", round, "seeds", list, "err", errors.Join(errs...))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove old replica %d: %w (last errors: %v)", old, ctx.Err(), errors.Join(errs...))
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
