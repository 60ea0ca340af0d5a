// Package node runs one kvd replica: a Dragonboat NodeHost with the Pebble
// state machine of package statemachine, started with the role that the
// membership package decides from what is on disk, and the membership
// controller (autopilot) that runs beside it.
//
// Usage:
//
//	n, err := node.Start(ctx, cfg)   // joins or forms a cluster first when asked; ctx bounds that wait
//	res, err := n.Propose(ctx, cmds) // committed and applied; res[i].Revision is the Raft index
//	r, err := n.Get(ctx, statemachine.GetQuery{Key: k}, node.Linearizable)
//	<-n.Removed()                     // closed if this replica learns it was removed
//	n.Stop()                          // idempotent
//
// Lifecycle rules: Start is a sequence of named steps (node.go: prepare,
// loadIdentity, openHost, decide, adoptIdentity, join, startReplica,
// startMetrics, startGoroutines); it writes the identity file before
// Dragonboat writes anything, so a restart with the same flags finds the
// same replica. Every Dragonboat call that waits for Raft (SyncPropose,
// SyncRead, SyncGetShardMembership, the SyncRequest* config changes and
// snapshots) runs under a context deadline: the caller's, or one the node
// sets. The others take no context: StaleRead (a local read of the state
// machine), GetNodeHostInfo, GetLeaderID, HasNodeInfo and GetNoOPSession
// read local state and return at once; RequestLeaderTransfer only asks;
// NewNodeHost, StartOnDiskReplica and Close are the NodeHost's own
// lifecycle, and tools.ImportSnapshot (Restore) runs with no NodeHost. The
// node owns its goroutines, all started under its lifetime context by
// startGoroutines (the readiness loop, which also publishes the member
// metadata; the membership controller; the cluster-ID settler, which ends
// once the ID is known; the member-event tracker) or by the write batcher (its
// proposers, which propose under that context, never a caller's); Stop
// cancels it and waits for them, then closes the NodeHost, which waits for
// Dragonboat's and Pebble's. Waits for a leader wake on Dragonboat's
// LeaderUpdated events (events.go), each with a bounded fallback.
// *Node implements membership.Host (host.go, meta.go, removal.go).
package node
