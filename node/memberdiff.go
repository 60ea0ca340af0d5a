package node

import (
	"fmt"
	"slices"
	"time"

	"github.com/kvd-project/kvd/membership"
)

// diffMembers is what changed between two views of the members, as events
// at time now: each member's changes in ID order (joined, for a new one),
// then removals, then a leader change. Pure, so that it can be table-tested.
func diffMembers(old, cur MemberView, now time.Time) []MemberEvent {
	var out []MemberEvent
	add := func(kind MemberEventKind, m membership.MemberInfo, reason string) {
		out = append(out, MemberEvent{Time: now, Kind: kind, ID: m.ID, Member: m, Reason: reason})
	}
	before := make(map[membership.ReplicaID]membership.MemberInfo, len(old.Rows))
	for _, r := range old.Rows {
		before[r.ID] = r
	}
	for _, m := range cur.Rows {
		o, ok := before[m.ID]
		if !ok {
			add(MemberJoined, m, fmt.Sprintf("admitted as %s, raft %s; %s", m.Role, m.RaftAddr, stateText(m)))
			if m.State == membership.StateReady {
				// It caught up before this node's first look at it (a
				// small store takes a joiner a few hundred ms): a watcher
				// still sees every joiner catch up before its promotion.
				add(MemberCaughtUp, m, fmt.Sprintf("ready when first seen; applied %d", m.Applied))
			}
			continue
		}
		for _, c := range memberChanges(o, m) {
			add(c.kind, m, c.reason)
		}
	}
	for _, o := range old.Rows {
		if !slices.ContainsFunc(cur.Rows, func(m membership.MemberInfo) bool { return m.ID == o.ID }) {
			add(MemberRemoved, o, removedText(o.ID, cur.Removed))
		}
	}
	if was, is := old.LeaderID(), cur.LeaderID(); was != is {
		var m membership.MemberInfo
		if i := slices.IndexFunc(cur.Rows, func(r membership.MemberInfo) bool { return r.ID == is }); i >= 0 {
			m = cur.Rows[i]
		}
		out = append(out, MemberEvent{Time: now, Kind: LeaderChanged, ID: is, Member: m, Reason: leaderText(was, is)})
	}
	return out
}

type change struct {
	kind   MemberEventKind
	reason string
}

// memberChanges is what changed about one member: whether its API
// answers, whether it is ready, then its role (an observer catches up
// before it is promoted, and one look may see both). One that goes
// unreachable is not also reported not ready (its row says so).
func memberChanges(o, m membership.MemberInfo) []change {
	var out []change
	wasDown, isDown := o.State == membership.StateUnreachable, m.State == membership.StateUnreachable
	wasReady, isReady := o.State == membership.StateReady, m.State == membership.StateReady
	if wasDown && !isDown {
		out = append(out, change{MemberReachable, "its API answers; " + stateText(m)})
	}
	switch {
	case !wasDown && isDown:
		out = append(out, change{MemberUnreachable, m.Reason})
	case !wasReady && isReady && fresh(o.State):
		out = append(out, change{MemberCaughtUp, fmt.Sprintf("was %s; applied %d", o.State, m.Applied)})
	case !wasReady && isReady:
		out = append(out, change{MemberReady, fmt.Sprintf("ready again (was %s)", o.State)})
	case wasReady && !isReady:
		out = append(out, change{MemberNotReady, stateText(m)})
	}
	if o.Role == membership.RoleObserver && m.Role == membership.RoleVoter {
		out = append(out, change{MemberPromoted, "observer → voter"})
	}
	return out
}

// fresh: a member in this state has not been seen ready since it
// (re)started, joined or was out of sight, so becoming ready is catching
// up; from isolated or stalled it is being ready again.
func fresh(s membership.State) bool {
	switch s {
	case membership.StateJoining, membership.StateStarting, membership.StateCatchingUp, membership.StateUnreachable:
		return true
	}
	return false
}

// stateText is a member's state with its reason, if any.
func stateText(m membership.MemberInfo) string {
	if m.Reason == "" {
		return m.State.String()
	}
	return m.State.String() + ": " + m.Reason
}

func removedText(id membership.ReplicaID, removed []membership.ReplicaID) string {
	if slices.Contains(removed, id) {
		return "removed from the Raft membership; its ID is never admitted again"
	}
	return "no longer in the Raft membership"
}

func leaderText(was, is membership.ReplicaID) string {
	switch {
	case is == 0:
		return fmt.Sprintf("no leader known (was %d)", was)
	case was == 0:
		return "leader elected (none was known)"
	}
	return fmt.Sprintf("replaces %d", was)
}
