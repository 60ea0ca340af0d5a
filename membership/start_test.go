package membership

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func TestDecideStart(t *testing.T) {
	boot := &Identity{ReplicaID: 2, Origin: OriginBootstrap, RaftAddr: "h:2"}
	joined := &Identity{ReplicaID: 777, Origin: OriginJoin, RaftAddr: "h:9"}
	members := map[ReplicaID]string{1: "h:1", 2: "h:2", 3: "h:3"}
	// Agreed with its peers under --bootstrap-expect: no --initial-members flag.
	rejoined := &Identity{ReplicaID: 5555555, Origin: OriginJoin, RaftAddr: "h:2", Replaced: 2}
	formed := &Identity{ReplicaID: 2, Origin: OriginBootstrap, RaftAddr: "h:2", InitialMembers: members}
	tests := []struct {
		name  string
		local LocalState
		flags StartFlags
		want  Plan
		err   error
		msg   string
		newID bool // want.Identity.ReplicaID is random: any new ID
	}{
		{name: "embedded default", flags: StartFlags{RaftAddr: "h:1"},
			want: Plan{Identity: Identity{ReplicaID: 1, Origin: OriginBootstrap, RaftAddr: "h:1", InitialMembers: map[ReplicaID]string{1: "h:1"}}, NewID: true, Members: map[ReplicaID]string{1: "h:1"}}},
		{name: "initial member by node id", flags: StartFlags{ReplicaID: 2, RaftAddr: "h:2", InitialMembers: members},
			want: Plan{Identity: Identity{ReplicaID: 2, Origin: OriginBootstrap, RaftAddr: "h:2", InitialMembers: members}, NewID: true, Members: members}},
		{name: "initial member by raft address", flags: StartFlags{RaftAddr: "h:3", InitialMembers: members},
			want: Plan{Identity: Identity{ReplicaID: 3, Origin: OriginBootstrap, RaftAddr: "h:3", InitialMembers: members}, NewID: true, Members: members}},
		{name: "not in initial members", flags: StartFlags{ReplicaID: 4, RaftAddr: "h:4", InitialMembers: members},
			err: ErrBadFlags, msg: "not in --initial-members"},
		{name: "node id with another address", flags: StartFlags{ReplicaID: 2, RaftAddr: "h:9", InitialMembers: members},
			err: ErrBadFlags},
		{name: "not in initial members but joining", flags: StartFlags{ReplicaID: 4, RaftAddr: "h:4", InitialMembers: members, Join: true},
			want: Plan{Identity: Identity{ReplicaID: 4, Origin: OriginJoin, RaftAddr: "h:4"}, NewID: true, Join: true, NonVoting: true, CallJoin: true}},
		{name: "initial member restarts as voter", local: LocalState{Identity: boot, HasRaftState: true},
			flags: StartFlags{ReplicaID: 2, RaftAddr: "h:2", InitialMembers: members},
			want:  Plan{Identity: *boot, Restart: true}},
		{name: "initial member restarts with --join given too", local: LocalState{Identity: boot, HasRaftState: true},
			flags: StartFlags{RaftAddr: "h:2", Join: true},
			want:  Plan{Identity: *boot, Restart: true}},
		{name: "initial member crashed before bootstrap record", local: LocalState{Identity: boot},
			flags: StartFlags{RaftAddr: "h:2", InitialMembers: members},
			want:  Plan{Identity: *boot, Members: members}},
		{name: "formed member crashed before its first start uses the agreed members", local: LocalState{Identity: formed},
			flags: StartFlags{ReplicaID: 2, RaftAddr: "h:2", Join: true},
			want:  Plan{Identity: *formed, Members: members}},
		{name: "formed member's flags naming other members are refused", local: LocalState{Identity: formed},
			flags: StartFlags{RaftAddr: "h:2", InitialMembers: map[ReplicaID]string{2: "h:2"}}, err: ErrIdentityMismatch, msg: "differ"},
		{name: "initial member that ran and lost its raft state refuses", local: LocalState{Identity: boot, Started: true},
			flags: StartFlags{ReplicaID: 2, RaftAddr: "h:2", InitialMembers: members, Join: true}, err: ErrStateLost, msg: "--rejoin"},
		{name: "joined replica that ran and lost its raft state refuses", local: LocalState{Identity: joined, Started: true},
			flags: StartFlags{RaftAddr: "h:9", Join: true}, err: ErrStateLost, msg: "--rejoin"},
		{name: "lost raft state with rejoin joins under a new ID", local: LocalState{Identity: boot, Started: true},
			flags: StartFlags{ReplicaID: 2, RaftAddr: "h:2", InitialMembers: members, Join: true, Rejoin: true}, newID: true,
			want: Plan{Identity: Identity{Origin: OriginJoin, RaftAddr: "h:2", Replaced: 2}, NewID: true, Join: true, NonVoting: true, CallJoin: true, Replaces: 2, WipeStateMachine: true}},
		{name: "lost raft state with rejoin needs join", local: LocalState{Identity: boot, Started: true},
			flags: StartFlags{ReplicaID: 2, RaftAddr: "h:2", InitialMembers: members, Rejoin: true}, err: ErrBadFlags, msg: "--join"},
		{name: "static member with an empty data dir that peers know refuses",
			local: LocalState{RanBefore: "member 1 lists replica 2 with API address a:2"},
			flags: StartFlags{ReplicaID: 2, RaftAddr: "h:2", InitialMembers: members, Join: true}, err: ErrStateLost, msg: "lists replica 2"},
		{name: "static member with an empty data dir rejoins under a new ID",
			local: LocalState{RanBefore: "member 1 lists replica 2 with API address a:2"},
			flags: StartFlags{ReplicaID: 2, RaftAddr: "h:2", InitialMembers: members, Join: true, Rejoin: true}, newID: true,
			want: Plan{Identity: Identity{Origin: OriginJoin, RaftAddr: "h:2", Replaced: 2}, NewID: true, Join: true, NonVoting: true, CallJoin: true, Replaces: 2}},
		{name: "static member with --rejoin never bootstraps its old ID", flags: StartFlags{RaftAddr: "h:3", InitialMembers: members, Join: true, Rejoin: true},
			newID: true, want: Plan{Identity: Identity{Origin: OriginJoin, RaftAddr: "h:3", Replaced: 3}, NewID: true, Join: true, NonVoting: true, CallJoin: true, Replaces: 3}},
		{name: "rejoined node restarts with the old --node-id", local: LocalState{Identity: rejoined, HasRaftState: true, Started: true},
			flags: StartFlags{ReplicaID: 2, RaftAddr: "h:2", InitialMembers: members, Join: true, Rejoin: true},
			want:  Plan{Identity: *rejoined, Restart: true, Join: true, NonVoting: true}},
		{name: "joined replica restarts non-voting", local: LocalState{Identity: joined, HasRaftState: true},
			flags: StartFlags{RaftAddr: "h:9", Join: true},
			want:  Plan{Identity: *joined, Restart: true, Join: true, NonVoting: true}},
		{name: "joined replica crashed before its first start asks again", local: LocalState{Identity: joined},
			flags: StartFlags{RaftAddr: "h:9", Join: true},
			want:  Plan{Identity: *joined, Join: true, NonVoting: true, CallJoin: true}},
		{name: "node id mismatch", local: LocalState{Identity: boot, HasRaftState: true},
			flags: StartFlags{ReplicaID: 3, RaftAddr: "h:2"}, err: ErrIdentityMismatch, msg: "--node-id is 3"},
		{name: "raft address changed", local: LocalState{Identity: boot, HasRaftState: true},
			flags: StartFlags{RaftAddr: "h:7"}, err: ErrIdentityMismatch, msg: "created with h:2"},
		{name: "raft state without identity", local: LocalState{HasRaftState: true},
			flags: StartFlags{RaftAddr: "h:1"}, err: ErrIdentityMismatch},
		{name: "removed refuses", local: LocalState{Identity: joined, HasRaftState: true, Removed: true},
			flags: StartFlags{RaftAddr: "h:9", Join: true}, err: ErrRemoved, msg: "--rejoin"},
		{name: "removed with rejoin wipes", local: LocalState{Identity: joined, HasRaftState: true, Removed: true},
			flags: StartFlags{RaftAddr: "h:9", Join: true, Rejoin: true}, want: Plan{Wipe: true}},
		{name: "rejoin needs join", local: LocalState{Identity: joined, Removed: true},
			flags: StartFlags{RaftAddr: "h:9", Rejoin: true}, err: ErrBadFlags},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecideStart(tt.local, tt.flags)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("err %v, want %v containing %q", err, tt.err, tt.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if FormatMembers(got.Members) != FormatMembers(tt.want.Members) || (got.Members == nil) != (tt.want.Members == nil) {
				t.Fatalf("members %v, want %v", got.Members, tt.want.Members)
			}
			got.Members, tt.want.Members = nil, nil
			if tt.newID {
				if got.Identity.ReplicaID == 0 || got.Identity.ReplicaID == got.Replaces {
					t.Fatalf("new ID %d (replaces %d): want a fresh random ID", got.Identity.ReplicaID, got.Replaces)
				}
				tt.want.Identity.ReplicaID = got.Identity.ReplicaID
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("plan %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestJoinWithoutNodeIDGetsRandomID(t *testing.T) {
	a, _ := DecideStart(LocalState{}, StartFlags{RaftAddr: "h:9", Join: true})
	b, _ := DecideStart(LocalState{}, StartFlags{RaftAddr: "h:9", Join: true})
	if a.Identity.ReplicaID == 0 || a.Identity.ReplicaID == b.Identity.ReplicaID {
		t.Fatalf("IDs %d and %d: want random non-zero", a.Identity.ReplicaID, b.Identity.ReplicaID)
	}
}

// ParseMembers reads a flag from the outside: it must never panic, and what
// it accepts must print back to something that parses to the same members.
func FuzzParseMembers(f *testing.F) {
	for _, s := range []string{"1=h:1,2=h:2", "", "x", "0=h:1", "1=h:1,1=h:2", "1=[::1]:7170", "18446744073709551615=a:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMembers(s)
		if err != nil {
			return
		}
		again, err := ParseMembers(FormatMembers(m))
		if err != nil || FormatMembers(again) != FormatMembers(m) {
			t.Fatalf("%q parsed to %v, which does not round-trip: %v", s, m, err)
		}
		for id := range m {
			if id == 0 {
				t.Fatalf("%q: accepted ID 0", s)
			}
		}
	})
}
