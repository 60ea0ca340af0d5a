package membership

import (
	"context"
	"errors"
	"testing"
)

// admitHost is a Host with a membership and metadata in memory.
type admitHost struct {
	Host // methods Admit does not call panic
	ms   Membership
	meta map[ReplicaID]Meta
	puts int
}

func (h *admitHost) Membership(context.Context) (Membership, error) { return h.ms, nil }
func (h *admitHost) Metas(context.Context) (map[ReplicaID]Meta, error) {
	out := map[ReplicaID]Meta{}
	for id, m := range h.meta {
		out[id] = m
	}
	return out, nil
}
func (h *admitHost) PutMeta(_ context.Context, id ReplicaID, m Meta) error {
	h.puts++
	h.meta[id] = m
	return nil
}
func (h *admitHost) AddObserver(_ context.Context, id ReplicaID, addr string, _ uint64) error {
	h.ms.Observers[id] = addr
	return nil
}

func newAdmitHost() *admitHost {
	return &admitHost{
		ms: Membership{Voters: map[ReplicaID]string{1: "r1", 2: "r2"}, Observers: map[ReplicaID]string{},
			Removed: map[ReplicaID]bool{}},
		meta: map[ReplicaID]Meta{1: {RaftAddr: "r1", APIAddr: "a1", Origin: OriginBootstrap},
			2: {RaftAddr: "r2", APIAddr: "a2", Origin: OriginBootstrap}},
	}
}

// A Join that claims an existing member's ID and Raft address is not taken
// as the member itself: it is refused, and the member's metadata (its API
// address, which the leader probes) is untouched.
func TestAdmitRefusesStrangerWithMemberID(t *testing.T) {
	h := newAdmitHost()
	before := h.meta[2]
	err := Admit(context.Background(), h, JoinRequest{ReplicaID: 2, RaftAddr: "r2", APIAddr: "evil:1"})
	if err == nil {
		t.Fatal("a stranger's join with member 2's ID and raft address was accepted")
	}
	if h.meta[2] != before || h.puts != 0 {
		t.Fatalf("member 2's metadata changed: %+v -> %+v (%d writes)", before, h.meta[2], h.puts)
	}
}

// The node that joined under an ID is admitted again with its token (it
// may have crashed after Join returned) and may update its API address;
// anyone else, or a member that never joined (an initial member), is
// refused with ErrNotSameNode and changes nothing.
func TestAdmitIsIdempotentForTheSameNodeOnly(t *testing.T) {
	ctx := context.Background()
	h := newAdmitHost()
	token := NewJoinToken()
	join := JoinRequest{ReplicaID: 7, RaftAddr: "r7", APIAddr: "a7", Token: token}
	if err := Admit(ctx, h, join); err != nil {
		t.Fatal(err)
	}
	if h.ms.Observers[7] != "r7" || h.meta[7].TokenHash != HashToken(token) || h.meta[7].TokenHash == token {
		t.Fatalf("after the join: observers %v, meta %+v", h.ms.Observers, h.meta[7])
	}
	joined := h.meta[7]
	for _, tc := range []struct {
		name string
		req  JoinRequest
	}{
		{"no token", JoinRequest{ReplicaID: 7, RaftAddr: "r7", APIAddr: "evil:1"}},
		{"wrong token", JoinRequest{ReplicaID: 7, RaftAddr: "r7", APIAddr: "evil:1", Token: NewJoinToken()}},
		{"the hash as token", JoinRequest{ReplicaID: 7, RaftAddr: "r7", APIAddr: "evil:1", Token: joined.TokenHash}},
		{"initial member", JoinRequest{ReplicaID: 1, RaftAddr: "r1", APIAddr: "evil:1", Token: token}},
	} {
		puts := h.puts
		err := Admit(ctx, h, tc.req)
		if !errors.Is(err, ErrNotSameNode) {
			t.Fatalf("%s: err %v, want ErrNotSameNode", tc.name, err)
		}
		if h.puts != puts || h.meta[7] != joined || h.meta[1].APIAddr != "a1" {
			t.Fatalf("%s: metadata changed: %+v, %+v", tc.name, h.meta[7], h.meta[1])
		}
	}
	// The same node again, at a new API address: accepted, hash kept.
	again := join
	again.APIAddr = "a7-new"
	if err := Admit(ctx, h, again); err != nil {
		t.Fatalf("the same node joining again: %v", err)
	}
	if h.meta[7].APIAddr != "a7-new" || h.meta[7].TokenHash != joined.TokenHash {
		t.Fatalf("after the same node's second join: %+v", h.meta[7])
	}
	puts := h.puts
	if err := Admit(ctx, h, again); err != nil || h.puts != puts {
		t.Fatalf("an unchanged second join: err %v, %d metadata writes (want none)", err, h.puts-puts)
	}
	if err := Admit(ctx, h, JoinRequest{ReplicaID: 8, RaftAddr: "r8"}); !errors.Is(err, ErrBadFlags) {
		t.Fatalf("a new member without a token: %v", err)
	}
}
