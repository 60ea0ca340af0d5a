// Package statemachine is kvd's replicated state: a Dragonboat
// IOnDiskStateMachine over Pebble, and the versioned binary codec of the
// commands kvd puts in the Raft log.
//
// It imports only Pebble and Dragonboat's statemachine package. See
// DESIGN.md beside this file for the on-disk layout, the codec and snapshot
// formats, and the durability argument.
//
// # Usage
//
// Start a replica with the factory, propose encoded commands, decode the
// results, and read with Lookup through SyncRead or StaleRead:
//
//	create := statemachine.New(dataDir, statemachine.Config{Logger: log})
//	err := nh.StartOnDiskReplica(members, join, create, raftCfg)
//
//	cmd := statemachine.EncodeCommands(nil, []statemachine.Command{{
//		Compares: []statemachine.Compare{{Key: []byte("k"), ModRevision: 0}}, // create only
//		Ops:      []statemachine.Op{{Type: statemachine.OpPut, Key: []byte("k"), Value: v}},
//	}})
//	res, err := nh.SyncPropose(ctx, nh.GetNoOPSession(shardID), cmd)
//	results, err := statemachine.ParseResult(res) // one Result per Command
//
//	r, err := nh.SyncRead(ctx, shardID, statemachine.GetQuery{Key: []byte("k")})
//	got := r.(statemachine.GetResult) // got.KV == nil: absent
//
// Lookup answers GetQuery (GetResult), RangeQuery (RangeResult),
// HistoryQuery (HistoryResult: watch events), AppliedQuery (uint64) and
// SavedSnapshotQuery (SavedSnapshot: the key count of a recent
// SaveSnapshot); anything else is ErrInvalidQuery. Returned keys and
// values are copies the caller owns.
//
// # Lifecycle
//
//   - New returns the factory; each replica gets its own directory, which
//     the state machine owns exclusively (a lock file enforces it). The
//     package-level Open builds a StateMachine without touching the disk;
//     its Open(stopc) method opens or creates the store and returns the
//     applied index on disk.
//   - Update, Sync, PrepareSnapshot, RecoverFromSnapshot and Close must not
//     run concurrently with each other (Dragonboat guarantees it).
//     SaveSnapshot may run concurrently with Update; Lookup with anything.
//   - Every command of an Update call commits in one Pebble batch with the
//     applied index, without fsync. Sync makes everything durable;
//     Dragonboat calls it before snapshots and periodically.
//   - An entry that does not decode is applied as a deterministic no-op
//     (sm.Result.Value == ResultCorrupt). A storage failure makes the state
//     machine fail every later write with ErrFailed: the replica must be
//     restarted. Entry indexes that do not increase panic.
//   - Close is idempotent; Lookup returns ErrClosed afterwards. Nothing
//     depends on Close being called: a crash at any point reopens to a
//     consistent prefix of the log.
//
// # Compatibility
//
// Bytes in the Raft log never change meaning: every entry starts with
// CodecVersion, OpType values are never renumbered, and decoding is strict.
// A new codec version must not be proposed until every replica's binary
// understands it, or replicas would apply the same entry differently (an
// old binary applies an entry of a newer version as a corrupt no-op).
package statemachine
