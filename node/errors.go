package node

import (
	"errors"
	"fmt"
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

// NotReadyError says how far behind a catching-up replica is.
type NotReadyError struct {
	Applied, Target uint64
}

func (e *NotReadyError) Error() string {
	if e.Target == 0 {
		return "catching up: no ReadIndex has completed yet; retry shortly or use a linearizable read"
	}
	return fmt.Sprintf("catching up: applied %d of %d; retry shortly or use a linearizable read", e.Applied, e.Target)
}

func (e *NotReadyError) Unwrap() error { return ErrNotReady }
