package client

import (
	"context"
	"errors"
	"strings"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// opWatchMembers names WatchMembers in Error.Op.
const opWatchMembers = "watch-members"

// MemberEventKind says what happened to a member.
type MemberEventKind int

// The kinds, numbered as the API numbers them.
const (
	MemberJoined      MemberEventKind = 1 // a new member
	MemberCaughtUp    MemberEventKind = 2 // ready after it joined, restarted or was unreachable
	MemberPromoted    MemberEventKind = 3 // observer → voter
	MemberUnreachable MemberEventKind = 4 // its API stopped answering
	MemberReachable   MemberEventKind = 5 // its API answers again
	MemberRemoved     MemberEventKind = 6 // no longer a member
	LeaderChanged     MemberEventKind = 7 // another member leads (MemberID 0: none known)
	MemberReady       MemberEventKind = 8 // ready again after isolated or stalled
	MemberNotReady    MemberEventKind = 9 // answers, but is not ready any more
)

// String is "joined", "caught-up", "promoted", "unreachable", "reachable",
// "removed", "leader-changed", "ready", "not-ready", or "unknown" for a kind
// this client does not know (a newer server's).
func (k MemberEventKind) String() string {
	name, ok := kvdv1.MemberEventKind_name[int32(k)]
	if !ok || k == 0 {
		return "unknown"
	}
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, "MEMBER_EVENT_KIND_"), "_", "-"))
}

// MemberEvent is one change in the answering node's view of the members.
type MemberEvent struct {
	// Time is when the answering node noticed it.
	Time     time.Time
	Kind     MemberEventKind
	MemberID MemberID
	// Reason says why, in words for an operator.
	Reason string
	// Member is the member after the change (before it, for a removal);
	// nil for a leader change to no leader.
	Member *Member
}

// MemberUpdate is one message of WatchMembers.
type MemberUpdate struct {
	// Members is the answering node's whole view: on the first update,
	// after every reconnect, and after events were lost. The events of
	// this and later updates follow from it.
	Members *MembersResult
	Events  []MemberEvent
	// EventsLost: events may be missing before Members: the stream moved
	// to another node (what changed in between is not replayed: compare
	// Members with the view you had), or this watcher fell behind the
	// node's buffer of recent events.
	EventsLost bool
	// Err is set on the last update, when the watch ends for good (ctx
	// ended, a refused request); the channel is closed after it.
	Err error
}

// WatchMembers streams the changes in the cluster's membership as one
// node sees them (see MemberEventKind) until ctx ends; the first update
// holds the whole member list. When that node dies, stops being ready
// (its view is frozen then) or sends nothing for 15 s (a partition, a hung
// process), the watch resumes on the next endpoint with that node's
// member list and EventsLost set: events between the two are lost.
// The channel is closed after a final update with Err set; a caller that
// cancels ctx may stop reading (if the channel is full then, the final
// update is left out).
func (c *Client) WatchMembers(ctx context.Context) <-chan MemberUpdate {
	out := make(chan MemberUpdate, 16)
	go c.watchMembers(ctx, out)
	return out
}

func (c *Client) watchMembers(ctx context.Context, out chan<- MemberUpdate) {
	defer close(out)
	resumed := false // an update came before: the next stream follows a gap
	err := c.resumeStream(ctx, opWatchMembers, nil, func(ctx context.Context, ep *endpoint) (bool, error) {
		delivered, err := c.watchMembersOn(ctx, ep, resumed, out)
		resumed = resumed || delivered
		return delivered, err
	}, watchMembersVerdict)
	sendFinal(ctx, out, MemberUpdate{Err: err})
}

// watchMembersOn runs one stream on ep until it fails. resumed marks its
// first update as following a gap. delivered reports whether any update
// came.
func (c *Client) watchMembersOn(ctx context.Context, ep *endpoint, resumed bool, out chan<- MemberUpdate) (delivered bool, err error) {
	open := func(ctx context.Context) (*connect.ServerStreamForClient[kvdv1.WatchMembersResponse], error) {
		return ep.cluster.WatchMembers(ctx, connect.NewRequest(&kvdv1.WatchMembersRequest{}))
	}
	err = receive(ctx, ep.name, streamSilence, open, func(ctx context.Context, m *kvdv1.WatchMembersResponse) error {
		u := memberUpdateFromProto(m, ep.name)
		if u.Members == nil && len(u.Events) == 0 {
			return nil // the node's heartbeat
		}
		u.EventsLost = u.EventsLost || (resumed && !delivered)
		delivered = true
		select {
		case out <- u:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	return delivered, err
}

// watchMembersVerdict says what a failed member watch means: the errors
// that end it, else a failure of the node.
func watchMembersVerdict(err error) (verdict, error) {
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument, connect.CodePermissionDenied, connect.CodeUnauthenticated, connect.CodeUnimplemented:
		return endStream, err
	}
	if tlsProblem(err) != "" {
		return endStream, errors.Join(ErrTLS, err)
	}
	return nodeFailed, nil
}

func memberUpdateFromProto(m *kvdv1.WatchMembersResponse, endpoint string) MemberUpdate {
	u := MemberUpdate{EventsLost: m.GetEventsDropped()}
	if m.GetMembers() != nil {
		u.Members = membersFromProto(m.GetMembers(), endpoint)
	}
	for _, e := range m.GetEvents() {
		ev := MemberEvent{Time: e.GetTime().AsTime(), Kind: MemberEventKind(e.GetKind()), MemberID: MemberID(e.GetMemberId()), Reason: e.GetReason()}
		if e.GetMember() != nil {
			mem := memberFromProto(e.GetMember())
			ev.Member = &mem
		}
		u.Events = append(u.Events, ev)
	}
	return u
}
