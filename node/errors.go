package node

import (
	"errors"
	"fmt"

	"github.com/kvd-project/kvd/membership"
)

// Errors returned by Node. The rpc package maps them (and the Dragonboat
// errors they wrap) to Connect codes in one table.
var (
	// ErrNotReady: the replica has not caught up with the leader yet, so a
	// local (serializable) read could be arbitrarily stale.
	ErrNotReady = errors.New("node: catching up")
	// ErrStopped: the node is shutting down or stopped.
	ErrStopped = errors.New("node: stopped")
	// ErrBadCommand: the state machine could not decode a proposed command.
	ErrBadCommand = errors.New("node: command rejected by the state machine")
	// ErrBadConfig: the configuration is invalid.
	ErrBadConfig = errors.New("node: invalid configuration")
)

// NotReadyError says why a replica serves no serializable reads: how far
// behind it is while catching up, or, for a node that was ready, why it
// stopped (State membership.StateIsolated: no leader or no ReadIndex within the
// bound; membership.StateRemoved).
type NotReadyError struct {
	Applied, Target uint64
	State           membership.State
	Reason          string
}

func (e *NotReadyError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("not ready (%s): %s; retry on another node or use a linearizable read", e.State, e.Reason)
	}
	if e.Target == 0 {
		return "not ready (catching up): no ReadIndex has completed yet; retry shortly or use a linearizable read"
	}
	return fmt.Sprintf("not ready (catching up): applied %d of %d; retry shortly or use a linearizable read", e.Applied, e.Target)
}

func (e *NotReadyError) Unwrap() error { return ErrNotReady }
