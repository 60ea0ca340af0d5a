package client

import (
	"context"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// Membership changes. The server checks Config.JoinSecret on each of them
// when the cluster has one (ErrPermissionDenied otherwise).
//
// Like writes, they are retried only when the request provably was not
// applied (dial failure, or Unavailable, which kvd sends only for changes it
// did not propose). A change whose attempt timed out or lost its connection
// may or may not have been applied: the error satisfies OutcomeUnknown, and
// the caller should list the Members before trying again. Aborted means a
// concurrent membership change won: nothing was applied, and the call may be
// repeated after reading the membership (IsTemporary reports true).

// Promote makes observer id a voter. Promoting a voter succeeds and changes
// nothing. It fails with ErrNotMember when id is not a member, and with
// ErrRefused when the cluster refuses the change.
func (c *Client) Promote(ctx context.Context, id MemberID) error {
	req := &kvdv1.PromoteRequest{Id: uint64(id)}
	_, err := do(ctx, c, call{op: opPromote, member: id, write: true},
		func(ctx context.Context, ep *endpoint) (struct{}, error) {
			_, err := ep.cluster.Promote(ctx, connect.NewRequest(req))
			return struct{}{}, err
		})
	return err
}

// Remove removes member id for good: its ID is never admitted again, and the
// replica stops when it learns it was removed. It fails with ErrNotMember
// when id is not a member, and with ErrRefused when the voters left
// reachable would not be a quorum (removing the only voter, say).
func (c *Client) Remove(ctx context.Context, id MemberID) error {
	req := &kvdv1.RemoveRequest{Id: uint64(id)}
	_, err := do(ctx, c, call{op: opRemove, member: id, write: true},
		func(ctx context.Context, ep *endpoint) (struct{}, error) {
			_, err := ep.cluster.Remove(ctx, connect.NewRequest(req))
			return struct{}{}, err
		})
	return err
}

// TransferLeader asks the leader to hand leadership to voter target. It
// returns once the request is accepted, not when the transfer is done: poll
// Members or Status for the new leader.
func (c *Client) TransferLeader(ctx context.Context, target MemberID) error {
	req := &kvdv1.TransferLeaderRequest{TargetId: uint64(target)}
	_, err := do(ctx, c, call{op: opTransferLeader, member: target, write: true},
		func(ctx context.Context, ep *endpoint) (struct{}, error) {
			_, err := ep.cluster.TransferLeader(ctx, connect.NewRequest(req))
			return struct{}{}, err
		})
	return err
}

// Snapshot asks one node, the one of CurrentEndpoint, to take a local
// snapshot of its state machine. It is the one call that does not fail over:
// a snapshot taken by another node is not the one asked for. It is retried on
// that node when it was unreachable or Unavailable. To snapshot a particular
// node, use a Client whose only endpoint is that node, or
// Raw(endpoint).Cluster.Snapshot; to snapshot every node, do that for each.
func (c *Client) Snapshot(ctx context.Context) error {
	_, err := do(ctx, c, call{op: opSnapshot, write: true, pinned: true},
		func(ctx context.Context, ep *endpoint) (struct{}, error) {
			_, err := ep.cluster.Snapshot(ctx, connect.NewRequest(&kvdv1.SnapshotRequest{}))
			return struct{}{}, err
		})
	return err
}
