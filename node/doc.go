// Package node runs one kvd replica: a Dragonboat NodeHost with the Pebble
// state machine of package statemachine, started with the right role for what
// is on disk.
//
// Usage:
//
//	n, err := node.Start(ctx, cfg)   // returns once the replica is started (not yet caught up)
//	res, err := n.Propose(ctx, cmds) // committed and applied; res[i].Revision is the Raft index
//	v, err := n.Read(ctx, statemachine.GetQuery{Key: k}, node.Linearizable)
//	n.Stop()                          // idempotent; safe after a failed start
//
// Lifecycle rules: Start creates or checks the identity file in the data
// directory before Dragonboat writes anything, so a restart with the same flags
// finds the same replica. Every Dragonboat call runs under a context deadline.
// The node owns its goroutines (the catch-up loop, metadata publication) and
// Stop waits for them.
package node
