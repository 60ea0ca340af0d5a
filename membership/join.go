package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ErrJoinRefused wraps a member's definite refusal to admit us (wrong secret,
// removed ID, address conflict): retrying cannot help. PeerDialer
// implementations wrap such answers with it.
var ErrJoinRefused = errors.New("membership: join refused")

// JoinCluster asks the seeds (API addresses; the function is called again
// on every round, so that discovery can re-resolve) to admit req, one after
// the other, with backoff between rounds, until one accepts, one refuses
// for good, or ctx ends.
func JoinCluster(ctx context.Context, d PeerDialer, seeds func() []string, req JoinRequest, log *slog.Logger) error {
	seed, err := askSeeds(ctx, seeds, log.With("wait", "for a member to admit this node"), func(ctx context.Context, seed string) error {
		return d.Join(ctx, seed, req)
	})
	if err != nil {
		return fmt.Errorf("join %w", err)
	}
	log.Info("joined the cluster as an observer", "via", seed, "replica", uint64(req.ReplicaID))
	return nil
}

// askSeeds calls call on the seeds one after the other, with backoff
// between rounds (seeds is called again on every round, so that discovery
// can re-resolve), until one succeeds (its address is returned), one
// refuses for good (ErrJoinRefused), or ctx ends. It logs that it waits on
// the first round and every fifth.
func askSeeds(ctx context.Context, seeds func() []string, log *slog.Logger, call func(ctx context.Context, seed string) error) (string, error) {
	backoff := 200 * time.Millisecond
	for round := 1; ; round++ {
		list := seeds()
		var errs []error
		for _, seed := range list {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := call(cctx, seed)
			cancel()
			if err == nil {
				return seed, nil
			}
			if errors.Is(err, ErrJoinRefused) {
				return "", fmt.Errorf("via %s: %w", seed, err)
			}
			errs = append(errs, fmt.Errorf("%s: %w", seed, err))
		}
		if len(list) == 0 {
			errs = append(errs, errors.New("no seed addresses (check --join or --discover)"))
		}
		if round == 1 || round%5 == 0 {
			log.Warn("no member answered yet; retrying", "round", round, "seeds", list, "err", errors.Join(errs...))
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("gave up: %w (last errors: %v)", ctx.Err(), errors.Join(errs...))
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
