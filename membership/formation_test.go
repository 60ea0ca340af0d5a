package membership

import (
	"strings"
	"testing"
)

func TestDecideFormation(t *testing.T) {
	p := func(id ReplicaID) Peer { return Peer{ID: id, RaftAddr: "r", APIAddr: "a"} }
	forming := func(id ReplicaID, proposal ...ReplicaID) PeerIdentity {
		pi := PeerIdentity{Peer: p(id)}
		for _, x := range proposal {
			pi.Proposal = append(pi.Proposal, p(x))
		}
		return pi
	}
	formed := func(id ReplicaID, members ...ReplicaID) PeerIdentity {
		pi := PeerIdentity{Peer: p(id), Formed: true}
		for _, x := range members {
			pi.Members = append(pi.Members, p(x))
		}
		return pi
	}
	tests := []struct {
		name    string
		self    ReplicaID
		peers   []PeerIdentity
		want    FormAction
		members string
		reason  string
	}{
		{"alone", 10, nil, FormWait, "", "seen 1 of 3"},
		{"two of three", 10, []PeerIdentity{forming(20)}, FormWait, "", "seen 2 of 3"},
		{"three, no agreement yet", 10, []PeerIdentity{forming(20), forming(30)}, FormWait, "", "waiting for node 20"},
		{"three agree", 10, []PeerIdentity{forming(20, 10, 20, 30), forming(30, 10, 20, 30)}, FormBootstrap, "[10 20 30]", "all 3 agree"},
		{"highest of four waits to join", 40, []PeerIdentity{forming(10, 10, 20, 30), forming(20, 10, 20, 30), forming(30, 10, 20, 30)}, FormWait, "", "not among the 3 lowest"},
		{"peer disagrees (saw a lower ID)", 10, []PeerIdentity{forming(20, 5, 10, 20), forming(30, 10, 20, 30)}, FormWait, "", "waiting for node 20"},
		{"a running cluster is joined", 5, []PeerIdentity{formed(10, 10, 20, 30), forming(20)}, FormJoin, "", "running cluster"},
		{"a running cluster that we agreed on", 30, []PeerIdentity{formed(10, 10, 20, 30)}, FormBootstrap, "[10 20 30]", "bootstrapped the agreed set"},
		{"joined member of a cluster", 5, []PeerIdentity{formed(77)}, FormJoin, "", "running cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecideFormation(p(tt.self), 3, tt.peers)
			if d.Action != tt.want || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("got %v %q, want %v with %q", d.Action, d.Reason, tt.want, tt.reason)
			}
			if tt.members != "" && peerIDs(d.Members) != tt.members {
				t.Fatalf("members %s, want %s", peerIDs(d.Members), tt.members)
			}
		})
	}
}

// Whatever order nodes see each other in, once all have seen all, the same
// set forms; a node that saw fewer waits.
func TestFormationConverges(t *testing.T) {
	ids := []ReplicaID{42, 7, 99, 13, 58}
	state := map[ReplicaID]PeerIdentity{}
	for _, id := range ids {
		state[id] = PeerIdentity{Peer: Peer{ID: id}}
	}
	boot := map[ReplicaID]string{}
	for round := 0; round < 4; round++ {
		for _, id := range ids {
			var peers []PeerIdentity
			for _, o := range ids {
				if o != id {
					peers = append(peers, state[o])
				}
			}
			d := DecideFormation(Peer{ID: id}, 3, peers)
			s := state[id]
			s.Proposal = d.Proposal
			if d.Action == FormBootstrap {
				s.Formed, s.Members = true, d.Members
				boot[id] = peerIDs(d.Members)
			}
			state[id] = s
		}
	}
	if len(boot) != 3 {
		t.Fatalf("%d nodes bootstrapped (%v), want 3", len(boot), boot)
	}
	for id, m := range boot {
		if m != "[7 13 42]" {
			t.Fatalf("node %d bootstrapped %s", id, m)
		}
	}
}
