package client

import (
	"context"
	"testing"

	"connectrpc.com/connect"
)

// Writes go to the leader (the fake nodes all name replica 1), reads stay
// on the current endpoint; a leader that fails is left for the current
// endpoint; AnyNodeWrites keeps writes on the current endpoint too.
func TestWritesGoToTheLeader(t *testing.T) {
	for _, unary := range []bool{false, true} {
		follower, leader := newFakeNode(t, 2), newFakeNode(t, 1)
		eps := []string{follower.addr, leader.addr}
		c := newTestClient(t, Config{Endpoints: eps, Unary: unary})
		ctx := context.Background()
		for range 3 {
			if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Delete(ctx, []byte("k")); err != nil {
			t.Fatal(err)
		}
		_, _ = c.Get(ctx, []byte("k"))
		if got := leader.Calls("Put") + leader.Calls("Delete"); got != 4 || follower.Calls("Put") != 0 {
			t.Errorf("unary=%v: leader served %d writes, follower %d puts; want 4 and 0", unary, got, follower.Calls("Put"))
		}
		if follower.Calls("Get") != 1 || leader.Calls("Get") != 0 {
			t.Errorf("unary=%v: gets follower %d leader %d, want the read on the current endpoint", unary, follower.Calls("Get"), leader.Calls("Get"))
		}

		leader.setFail(always(connect.CodeUnavailable))
		if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
			t.Fatalf("unary=%v: put with the leader failing = %v, want it served by the other node", unary, err)
		}
		if follower.Calls("Put") != 1 {
			t.Errorf("unary=%v: follower puts %d after the leader failed, want 1", unary, follower.Calls("Put"))
		}

		any := newTestClient(t, Config{Endpoints: []string{follower.addr, leader.addr}, Unary: unary, AnyNodeWrites: true})
		if _, err := any.Put(ctx, []byte("k"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		if follower.Calls("Put") != 2 {
			t.Errorf("unary=%v: AnyNodeWrites: follower puts %d, want 2", unary, follower.Calls("Put"))
		}
	}
}
