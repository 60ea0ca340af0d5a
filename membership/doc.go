// Package membership decides who a kvd node is and what role it should
// have, without an operator and without an external registry.
//
//   - Identity (identity.go): replica ID, origin (bootstrap|join),
//     addresses and join token, fsynced in the data dir before the first
//     StartReplica; the started marker, fsynced right before it.
//   - DecideStart (start.go): the start-up decision, a pure function of the
//     local state and the flags; the same flags work for every restart.
//   - JoinCluster / Admit (join.go, admit.go): the joiner asks any member;
//     the member records the joiner's metadata through Raft, then proposes
//     AddNonVoting with the membership's config-change ID. A Join for an
//     existing member is accepted again only with that member's join token.
//   - RanBefore / RemoveOld (rejoin.go): a static member with an empty data
//     dir asks its peers whether its ID has run; --rejoin has the old ID
//     removed before joining under a new one.
//   - DecidePromotion / DecideRemoval / CheckRemoval (policy.go): the
//     autopilot's decisions, pure functions with table tests.
//   - Controller (controller.go, tracker.go): probes peers, publishes this
//     node's view, promotes this observer from the leader's view, removes
//     dead voters when it leads, snapshots after a role change, writes the
//     membership cache file.
//
// The package never imports the node or HTTP: it declares Host (the local
// replica) and PeerDialer (other members' APIs), implemented by package node
// and package rpc. Lifecycle: NewController, then Run(ctx) until ctx ends.
package membership
