package client

import (
	"context"
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"
)

// TestErrorMapping checks, for every code a server may send to a KV write
// (put), a KV read (get) and a Cluster call (remove), which sentinel the
// error matches, that connect.CodeOf still sees the code, and how
// IsTemporary and OutcomeUnknown classify it.
func TestErrorMapping(t *testing.T) {
	sentinels := []error{ErrNotFound, ErrCompareFailed, ErrRefused, ErrNotMember, ErrUnavailable,
		ErrInvalidArgument, ErrPermissionDenied, ErrClosed}
	tests := []struct {
		code connect.Code
		// The sentinel each call matches; nil: none.
		put, get, remove error
		temporary        bool
		// unknownWrite: a Put or Remove failing so has an unknown outcome.
		unknownWrite bool
		// Part of the message of the put and of the remove.
		putMsg, removeMsg string
	}{
		{connect.CodeNotFound, nil, ErrNotFound, ErrNotMember, false, false,
			"not_found: injected", "no such member: injected not_found at "},
		{connect.CodeFailedPrecondition, ErrCompareFailed, nil, ErrRefused, false, false,
			"compare failed", "refused: injected failed_precondition at "},
		{connect.CodeUnavailable, ErrUnavailable, ErrUnavailable, ErrUnavailable, true, false,
			"cluster unavailable after 1 attempt(s)", "cluster unavailable after 1 attempt(s)"},
		{connect.CodeInvalidArgument, ErrInvalidArgument, ErrInvalidArgument, ErrInvalidArgument, false, false,
			"invalid_argument", "invalid_argument"},
		{connect.CodePermissionDenied, ErrPermissionDenied, ErrPermissionDenied, ErrPermissionDenied, false, false,
			"permission_denied", "permission_denied"},
		{connect.CodeAborted, nil, nil, nil, true, false, "aborted", "aborted"},
		{connect.CodeDeadlineExceeded, nil, nil, nil, true, true,
			"outcome unknown", "the change may or may not have been applied; list the members"},
		{connect.CodeResourceExhausted, nil, nil, nil, true, false, "resource_exhausted", "resource_exhausted"},
		{connect.CodeUnknown, nil, nil, nil, false, true, "read the key before retrying", "list the members"},
		{connect.CodeInternal, nil, nil, nil, false, true, "outcome unknown", "outcome unknown"},
		{connect.CodeUnimplemented, nil, nil, nil, false, false,
			"is the endpoint a kvd API address", "is the endpoint a kvd API address"},
		{connect.CodeUnauthenticated, nil, nil, nil, false, false, "unauthenticated", "unauthenticated"},
	}
	n := newFakeNode(t, 1)
	c := newTestClient(t, Config{Endpoints: []string{n.addr}, MaxAttempts: 1})
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			n.setFail(always(tt.code))
			_, putErr := c.Put(ctx, []byte("k"), []byte("v"))
			_, getErr := c.Get(ctx, []byte("k"))
			removeErr := c.Remove(ctx, 4)
			for _, call := range []struct {
				name      string
				err, want error
			}{{"put", putErr, tt.put}, {"get", getErr, tt.get}, {"remove", removeErr, tt.remove}} {
				err := call.err
				if got := connect.CodeOf(err); got != tt.code {
					t.Errorf("%s: connect.CodeOf(%v) = %v, want %v", call.name, err, got, tt.code)
				}
				for _, s := range sentinels {
					if got, want := errors.Is(err, s), s == call.want; got != want {
						t.Errorf("%s: errors.Is(%v, %v) = %v, want %v", call.name, err, s, got, want)
					}
				}
				if got := IsTemporary(err); got != tt.temporary {
					t.Errorf("%s: IsTemporary(%v) = %v, want %v", call.name, err, got, tt.temporary)
				}
				var ce *connect.Error
				if !errors.As(err, &ce) {
					t.Errorf("%s: %v does not wrap a *connect.Error", call.name, err)
				}
			}
			for _, err := range []error{putErr, removeErr} {
				if got := OutcomeUnknown(err); got != tt.unknownWrite {
					t.Errorf("OutcomeUnknown(%v) = %v, want %v", err, got, tt.unknownWrite)
				}
			}
			if OutcomeUnknown(getErr) {
				t.Errorf("OutcomeUnknown(get: %v) = true for a read", getErr)
			}
			if !strings.Contains(putErr.Error(), tt.putMsg) {
				t.Errorf("message %q does not contain %q", putErr, tt.putMsg)
			}
			if !strings.Contains(removeErr.Error(), tt.removeMsg) {
				t.Errorf("message %q does not contain %q", removeErr, tt.removeMsg)
			}
			if !strings.HasPrefix(putErr.Error(), `put "k": `) {
				t.Errorf("message %q does not start with the op and key", putErr)
			}
			if !strings.HasPrefix(removeErr.Error(), `remove member 4: `) {
				t.Errorf("message %q does not start with the op and member", removeErr)
			}
		})
	}
}

func TestCompareFailedCarriesCurrentRevision(t *testing.T) {
	n := newFakeNode(t, 1)
	c := newTestClient(t, Config{Endpoints: []string{n.addr}})
	ctx := context.Background()
	put, err := c.Put(ctx, []byte("k"), []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Put(ctx, []byte("k"), []byte("v2"), IfModRevision(put.Revision+5))
	if !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("err = %v, want ErrCompareFailed", err)
	}
	rev, ok := CurrentModRevision(err)
	if !ok || rev != put.Revision {
		t.Errorf("CurrentModRevision = %d, %v; want %d, true", rev, ok, put.Revision)
	}
	if !strings.Contains(err.Error(), "current mod revision is 1") {
		t.Errorf("message %q does not give the current revision", err)
	}
	// Without a detail: no revision, still ErrCompareFailed.
	_, err = c.Delete(ctx, []byte("k"), IfModRevision(99))
	if !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("Delete err = %v, want ErrCompareFailed", err)
	}
	if _, ok := CurrentModRevision(err); ok {
		t.Error("CurrentModRevision found a revision the server did not send")
	}
	if _, ok := CurrentModRevision(errors.New("other")); ok {
		t.Error("CurrentModRevision of an unrelated error")
	}
}

func TestIsTemporaryOfForeignErrors(t *testing.T) {
	if IsTemporary(nil) || IsTemporary(errors.New("x")) {
		t.Error("IsTemporary true for a non-kvd error")
	}
	if OutcomeUnknown(nil) || OutcomeUnknown(connect.NewError(connect.CodeDeadlineExceeded, nil)) {
		t.Error("OutcomeUnknown true for an error the client did not make")
	}
}
