package membership

import (
	"context"
	"strings"
	"testing"
)

type fakeHost struct {
	Host // methods the tracker does not call panic
	ms   Membership
	meta map[ReplicaID]Meta
}

func (h *fakeHost) ID() ReplicaID                                  { return 1 }
func (h *fakeHost) Local() Local                                   { return Local{Role: RoleVoter, LeaderID: 1, Ready: true} }
func (h *fakeHost) Membership(context.Context) (Membership, error) { return h.ms, nil }
func (h *fakeHost) Metas(context.Context) (map[ReplicaID]Meta, error) {
	return h.meta, nil
}

type fakeDialer struct {
	PeerDialer
	answers map[string]PeerStatus
}

func (d *fakeDialer) Status(_ context.Context, api string) (PeerStatus, error) {
	return d.answers[api], nil
}

// A member's address that answers as another replica (a new container on a
// dead member's IP) does not make the member look alive.
func TestTrackerRejectsAnswerFromAnotherReplica(t *testing.T) {
	h := &fakeHost{
		ms:   Membership{Voters: map[ReplicaID]string{1: "r1", 2: "r2", 3: "r3"}},
		meta: map[ReplicaID]Meta{2: {APIAddr: "a2"}, 3: {APIAddr: "a3"}},
	}
	d := &fakeDialer{answers: map[string]PeerStatus{
		"a2": {ID: 9, Role: RoleObserver, Ready: true, Applied: 5}, // someone else now
		"a3": {ID: 3, Role: RoleVoter, Ready: true, Applied: 5},
	}}
	tr := newTracker(h, d, func() string { return "" })
	if _, err := tr.probe(context.Background(), 1e9); err != nil {
		t.Fatal(err)
	}
	rows, _, ok := tr.members()
	if !ok {
		t.Fatal("no view after a probe")
	}
	for _, r := range rows {
		switch r.ID {
		case 2:
			if r.State != "unreachable" || r.DownFor == 0 || r.Ready || !strings.Contains(r.Reason, "answers as replica 9") {
				t.Fatalf("member 2 = %+v; want unreachable", r)
			}
		case 3:
			if r.State != "" && r.DownFor != 0 || !r.Ready {
				t.Fatalf("member 3 = %+v; want reachable and ready", r)
			}
		}
	}
}
