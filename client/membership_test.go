package client

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

func memberIDs(t *testing.T, c *Client) (voters, observers, removed []MemberID) {
	t.Helper()
	ms, err := c.Members(context.Background())
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	for _, m := range ms.Members {
		if m.Role == RoleVoter {
			voters = append(voters, m.ID)
		} else {
			observers = append(observers, m.ID)
		}
	}
	return voters, observers, ms.RemovedIDs
}

func TestPromoteAndRemove(t *testing.T) {
	n := newFakeNode(t, 1)
	c := newTestClient(t, Config{Endpoints: []string{n.addr}})
	ctx := context.Background()

	if err := c.Promote(ctx, 4); err != nil {
		t.Fatalf("Promote(4): %v", err)
	}
	if v, o, _ := memberIDs(t, c); !slices.Equal(v, []MemberID{1, 4}) || !slices.Equal(o, []MemberID{5}) {
		t.Errorf("after Promote(4): voters %v, observers %v; want [1 4], [5]", v, o)
	}
	if err := c.Remove(ctx, 4); err != nil {
		t.Fatalf("Remove(4): %v", err)
	}
	if v, o, r := memberIDs(t, c); !slices.Equal(v, []MemberID{1}) || !slices.Equal(o, []MemberID{5}) ||
		!slices.Equal(r, []MemberID{9, 4}) {
		t.Errorf("after Remove(4): voters %v, observers %v, removed %v", v, o, r)
	}

	// Not a member: ErrNotMember, never ErrNotFound (that is for keys).
	err := c.Promote(ctx, 99)
	if !errors.Is(err, ErrNotMember) || errors.Is(err, ErrNotFound) {
		t.Errorf("Promote(99) = %v, want ErrNotMember and not ErrNotFound", err)
	}
	if want := "promote member 99: no such member: membership: not a member: replica 99"; !strings.Contains(err.Error(), want) {
		t.Errorf("message %q does not contain %q", err, want)
	}
	if err := c.Remove(ctx, 4); !errors.Is(err, ErrNotMember) {
		t.Errorf("Remove of a removed member = %v, want ErrNotMember", err)
	}

	// Refused: ErrRefused with the server's reason, never ErrCompareFailed.
	err = c.Remove(ctx, 1)
	if !errors.Is(err, ErrRefused) || errors.Is(err, ErrCompareFailed) {
		t.Errorf("Remove(only voter) = %v, want ErrRefused and not ErrCompareFailed", err)
	}
	want := "remove member 1: refused: membership: change would break the quorum: replica 1 is the only voter at " + n.addr
	if err == nil || err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if _, ok := CurrentModRevision(err); ok {
		t.Error("CurrentModRevision of a refused membership change")
	}
	if got := n.Calls("Remove"); got != 3 {
		t.Errorf("node saw %d removes, want 3: definite answers are not retried", got)
	}
}

func TestTransferLeader(t *testing.T) {
	n := newFakeNode(t, 1)
	c := newTestClient(t, Config{Endpoints: []string{n.addr}})
	if err := c.TransferLeader(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	got := n.transferTo
	n.mu.Unlock()
	if got != 5 {
		t.Errorf("TransferLeader sent target %d, want 5", got)
	}
	n.setFail(always(connect.CodeFailedPrecondition))
	err := c.TransferLeader(context.Background(), 5)
	if !errors.Is(err, ErrRefused) || !strings.HasPrefix(err.Error(), "transfer-leader member 5: refused: ") {
		t.Errorf("TransferLeader = %v, want ErrRefused naming the member", err)
	}
}

func TestJoinSecret(t *testing.T) {
	n := newFakeNode(t, 1)
	n.setSecret("s3cret")
	ctx := context.Background()

	for _, secret := range []string{"", "wrong-guess"} {
		c := newTestClient(t, Config{Endpoints: []string{n.addr}, JoinSecret: secret})
		err := c.Promote(ctx, 4)
		if !errors.Is(err, ErrPermissionDenied) || errors.Is(err, ErrRefused) {
			t.Errorf("secret %q: Promote = %v, want ErrPermissionDenied only", secret, err)
		}
		if err != nil && secret != "" && strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
	if _, o, _ := memberIDs(t, newTestClient(t, Config{Endpoints: []string{n.addr}})); !slices.Contains(o, 4) {
		t.Fatalf("a refused Promote changed the membership: observers %v", o)
	}

	c := newTestClient(t, Config{Endpoints: []string{n.addr}, JoinSecret: "s3cret"})
	if err := c.Promote(ctx, 4); err != nil {
		t.Fatalf("Promote with the secret: %v", err)
	}
	if err := c.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot with the secret: %v", err)
	}
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err := c.Raw(n.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Cluster.Snapshot(ctx, connect.NewRequest(&kvdv1.SnapshotRequest{})); err != nil {
		t.Fatalf("Raw Snapshot: %v", err)
	}
	// Every call carries the secret, raw ones too.
	for proc, want := range map[string][]string{
		"Promote":  {"", "wrong-guess", "s3cret"},
		"Snapshot": {"s3cret", "s3cret"},
		"Stream":   {"s3cret"}, // the Put

		"Status":  {"s3cret"},
		"Members": {""},
	} {
		if got := n.secretsSent(proc); !slices.Equal(got, want) {
			t.Errorf("%s calls sent secrets %q, want %q", proc, got, want)
		}
	}
}

func TestMembershipChangeRetries(t *testing.T) {
	ctx := context.Background()

	t.Run("unavailable is retried on the next endpoint", func(t *testing.T) {
		a, b := newFakeNode(t, 1), newFakeNode(t, 2)
		a.setFail(always(connect.CodeUnavailable))
		c := newTestClient(t, Config{Endpoints: []string{a.addr, b.addr}})
		if err := c.Promote(ctx, 4); err != nil {
			t.Fatalf("Promote: %v", err)
		}
		if err := c.Remove(ctx, 5); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if a.Calls("Promote") != 1 || b.Calls("Promote") != 1 || b.Calls("Remove") != 1 {
			t.Errorf("promotes %d, %d; removes on b %d: want 1, 1, 1", a.Calls("Promote"), b.Calls("Promote"),
				b.Calls("Remove"))
		}
	})

	t.Run("a timeout is not retried: outcome unknown", func(t *testing.T) {
		a, b := newFakeNode(t, 1), newFakeNode(t, 2)
		a.setDelay(time.Second)
		c := newTestClient(t, Config{Endpoints: []string{a.addr, b.addr}, RequestTimeout: 50 * time.Millisecond})
		err := c.Remove(ctx, 5)
		if !OutcomeUnknown(err) || errors.Is(err, ErrRefused) {
			t.Fatalf("Remove = %v, want an unknown outcome", err)
		}
		if !strings.Contains(err.Error(), "list the members before retrying") {
			t.Errorf("message %q does not say what to do", err)
		}
		if a.Calls("Remove")+b.Calls("Remove") != 1 {
			t.Errorf("Remove sent %d times, want once", a.Calls("Remove")+b.Calls("Remove"))
		}
	})

	t.Run("aborted is not retried but temporary", func(t *testing.T) {
		a, b := newFakeNode(t, 1), newFakeNode(t, 2)
		a.setFail(always(connect.CodeAborted))
		c := newTestClient(t, Config{Endpoints: []string{a.addr, b.addr}})
		err := c.Promote(ctx, 4)
		if !IsTemporary(err) || OutcomeUnknown(err) || b.Calls("Promote") != 0 {
			t.Errorf("Promote = %v (temporary %v, unknown %v, b saw %d): want a temporary error, not retried",
				err, IsTemporary(err), OutcomeUnknown(err), b.Calls("Promote"))
		}
	})
}

func TestSnapshotStaysOnOneNode(t *testing.T) {
	a, b := newFakeNode(t, 1), newFakeNode(t, 2)
	c := newTestClient(t, Config{Endpoints: []string{a.addr, b.addr}, MaxAttempts: 3})
	ctx := context.Background()

	c.cur.Store(1)
	if err := c.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Calls("Snapshot") != 0 || b.Calls("Snapshot") != 1 {
		t.Errorf("snapshots on a, b = %d, %d; want 0, 1 (the current endpoint)", a.Calls("Snapshot"), b.Calls("Snapshot"))
	}

	b.setFail(always(connect.CodeUnavailable))
	err := c.Snapshot(ctx)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Snapshot on an unavailable node = %v, want ErrUnavailable", err)
	}
	if a.Calls("Snapshot") != 0 || b.Calls("Snapshot") != 4 {
		t.Errorf("snapshots on a, b = %d, %d; want 0, 4: retried on the same node only",
			a.Calls("Snapshot"), b.Calls("Snapshot"))
	}
	if c.CurrentEndpoint() != b.addr {
		t.Errorf("current endpoint moved to %q", c.CurrentEndpoint())
	}
	if e := new(Error); !errors.As(err, &e) || !slices.Equal(e.Endpoints, []string{b.addr}) || e.Attempts != 3 {
		t.Errorf("error %+v: want 3 attempts on %s only", e, b.addr)
	}
}
