package rpc

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/node"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// MemberWatcher is what WatchMembers needs from a node (node.Node
// implements it): its view of the members and the events that change it.
type MemberWatcher interface {
	WatchMembers() (*node.MemberWatch, node.MemberView, error)
}

// memberWatchCheck is how often an idle WatchMembers stream checks that
// its node is still ready; memberWatchHeartbeat, how long it may stay
// silent before it sends an empty message (the proto promises 5 s: a
// client that hears nothing for longer takes the node for lost).
const (
	memberWatchCheck     = time.Second
	memberWatchHeartbeat = 5 * time.Second
)

// WatchMembers sends the node's view of the members, then the events as
// the node notices them, and an empty message after 5 s without one. A
// node that stops being ready ends the stream with Unavailable (its view
// is frozen): the client resumes on another.
func (s *clusterServer) WatchMembers(ctx context.Context, _ *connect.Request[kvdv1.WatchMembersRequest], stream *connect.ServerStream[kvdv1.WatchMembersResponse]) error {
	return s.watchMembers(ctx, stream)
}

func (s *clusterServer) watchMembers(ctx context.Context, stream sender[kvdv1.WatchMembersResponse]) error {
	mw, ok := s.view.(MemberWatcher)
	if !ok {
		return connect.NewError(connect.CodeUnimplemented, errors.New("watch members: this node does not serve membership events"))
	}
	w, v, err := mw.WatchMembers()
	if err != nil {
		return toConnect(err)
	}
	self := uint64(s.view.ID())
	if err := stream.Send(&kvdv1.WatchMembersResponse{Members: membersProto(v), NodeId: self}); err != nil {
		return err
	}
	tick := time.NewTicker(memberWatchCheck)
	defer tick.Stop()
	sent := time.Now()
	for {
		changed := w.Changed()
		if b := w.Next(); len(b.Events) > 0 || b.Dropped || time.Since(sent) >= memberWatchHeartbeat {
			if err := stream.Send(memberBatchProto(b, self)); err != nil {
				return err
			}
			sent = time.Now()
		}
		if err := w.Err(); err != nil {
			return toConnect(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.Done():
			return toConnect(node.ErrStopped)
		case <-changed:
		case <-tick.C:
		}
	}
}

func memberBatchProto(b node.MemberBatch, self uint64) *kvdv1.WatchMembersResponse {
	out := &kvdv1.WatchMembersResponse{NodeId: self, EventsDropped: b.Dropped}
	if b.Dropped {
		out.Members = membersProto(b.View)
	}
	for _, e := range b.Events {
		pe := &kvdv1.MemberEvent{Time: timestamppb.New(e.Time), Kind: kvdv1.MemberEventKind(e.Kind), MemberId: uint64(e.ID), Reason: e.Reason}
		if e.Member.ID != 0 {
			pe.Member = memberProto(e.Member)
		}
		out.Events = append(out.Events, pe)
	}
	return out
}

// membersProto is a view as Members answers it.
func membersProto(v node.MemberView) *kvdv1.MembersResponse {
	out := &kvdv1.MembersResponse{ConfigChangeId: v.ConfigChangeID, LeaderId: uint64(v.LeaderID())}
	for _, id := range v.Removed {
		out.RemovedIds = append(out.RemovedIds, uint64(id))
	}
	for _, r := range v.Rows {
		out.Members = append(out.Members, memberProto(r))
	}
	return out
}

func memberProto(r membership.MemberInfo) *kvdv1.Member {
	return &kvdv1.Member{
		Id: uint64(r.ID), Role: roleProto(r.Role), RaftAddr: r.RaftAddr, ApiAddr: r.APIAddr,
		Leader: r.Leader, AppliedIndex: r.Applied, Ready: r.Ready, State: r.State.String(), Lag: r.Lag,
		Reason: r.Reason, DownForMs: uint64(r.DownFor / time.Millisecond),
	}
}
