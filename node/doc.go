// Package node runs one kvd replica: a Dragonboat NodeHost with the Pebble
// state machine of package statemachine, started with the role that the
// membership package decides from what is on disk, and the membership
// controller (autopilot) that runs beside it.
//
// Usage:
//
//	n, err := node.Start(ctx, cfg)   // joins or forms a cluster first when asked; ctx bounds that wait
//	res, err := n.Propose(ctx, cmds) // committed and applied; res[i].Revision is the Raft index
//	v, err := n.Read(ctx, statemachine.GetQuery{Key: k}, node.Linearizable)
//	<-n.Removed()                     // closed if this replica learns it was removed
//	n.Stop()                          // idempotent
//
// Lifecycle rules: Start writes the identity file before Dragonboat writes
// anything, so a restart with the same flags finds the same replica. Every
// Dragonboat call runs under a context deadline. The node owns its
// goroutines (the readiness loop, metadata publication, the membership
// controller, the write batcher's proposers, which propose under the
// node's lifetime context, never a caller's) and Stop waits for them.
// *Node implements membership.Host.
package node
