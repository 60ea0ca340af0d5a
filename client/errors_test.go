package client

import (
	"context"
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"
)

// TestErrorMapping checks, for every code a server may send, which sentinel
// the error matches, that connect.CodeOf still sees the code, and how
// IsTemporary and OutcomeUnknown classify it for a write and for a read.
func TestErrorMapping(t *testing.T) {
	sentinels := []error{ErrNotFound, ErrCompareFailed, ErrUnavailable, ErrInvalidArgument, ErrPermissionDenied, ErrClosed}
	tests := []struct {
		code      connect.Code
		sentinel  error // nil: none matches
		temporary bool
		// unknownWrite: a Put failing so has an unknown outcome.
		unknownWrite bool
		msg          string // part of the message
	}{
		{connect.CodeNotFound, ErrNotFound, false, false, "key not found at "},
		{connect.CodeFailedPrecondition, ErrCompareFailed, false, false, "compare failed"},
		{connect.CodeUnavailable, ErrUnavailable, true, false, "cluster unavailable after 1 attempt(s)"},
		{connect.CodeInvalidArgument, ErrInvalidArgument, false, false, "invalid_argument"},
		{connect.CodePermissionDenied, ErrPermissionDenied, false, false, "permission_denied"},
		{connect.CodeDeadlineExceeded, nil, true, true, "outcome unknown"},
		{connect.CodeResourceExhausted, nil, true, false, "resource_exhausted"},
		{connect.CodeUnknown, nil, false, true, "outcome unknown"},
		{connect.CodeInternal, nil, false, true, "outcome unknown"},
		{connect.CodeUnimplemented, nil, false, false, "is the endpoint a kvd API address"},
		{connect.CodeUnauthenticated, nil, false, false, "unauthenticated"},
	}
	n := newFakeNode(t, 1)
	c := newTestClient(t, Config{Endpoints: []string{n.addr}, MaxAttempts: 1})
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			n.setFail(always(tt.code))
			_, putErr := c.Put(ctx, []byte("k"), []byte("v"))
			_, getErr := c.Get(ctx, []byte("k"))
			for _, err := range []error{putErr, getErr} {
				if got := connect.CodeOf(err); got != tt.code {
					t.Errorf("connect.CodeOf(%v) = %v, want %v", err, got, tt.code)
				}
				for _, s := range sentinels {
					if got, want := errors.Is(err, s), s == tt.sentinel; got != want {
						t.Errorf("errors.Is(%v, %v) = %v, want %v", err, s, got, want)
					}
				}
				if got := IsTemporary(err); got != tt.temporary {
					t.Errorf("IsTemporary(%v) = %v, want %v", err, got, tt.temporary)
				}
				var ce *connect.Error
				if !errors.As(err, &ce) {
					t.Errorf("%v does not wrap a *connect.Error", err)
				}
			}
			if got := OutcomeUnknown(putErr); got != tt.unknownWrite {
				t.Errorf("OutcomeUnknown(put: %v) = %v, want %v", putErr, got, tt.unknownWrite)
			}
			if OutcomeUnknown(getErr) {
				t.Errorf("OutcomeUnknown(get: %v) = true for a read", getErr)
			}
			if !strings.Contains(putErr.Error(), tt.msg) {
				t.Errorf("message %q does not contain %q", putErr, tt.msg)
			}
			if !strings.HasPrefix(putErr.Error(), `put "k": `) {
				t.Errorf("message %q does not start with the op and key", putErr)
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
