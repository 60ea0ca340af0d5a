package node

import "go.uber.org/goleak"

// ignoredGoroutines are process-wide goroutines that are not the node's.
func ignoredGoroutines() []goleak.Option {
	return nil
}
