package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
)

func TestClassify(t *testing.T) {
	dial := &url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: syscall.ECONNREFUSED}}
	read := &url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "read", Net: "tcp",
		Err: syscall.ECONNRESET}}
	wire := func(c connect.Code) error { return connect.NewWireError(c, errors.New("from server")) }
	local := func(c connect.Code, err error) error { return connect.NewError(c, err) }
	tests := []struct {
		name      string
		err       error
		callerErr error
		want      failure
	}{
		{"nil", nil, nil, failNone},
		{"dial refused", local(connect.CodeUnavailable, dial), nil, failNotSent},
		{"dial timeout", local(connect.CodeDeadlineExceeded, dial), nil, failNotSent},
		{"dial fails as caller ctx ends", local(connect.CodeCanceled, dial), context.Canceled, failNotSent},
		{"server unavailable", wire(connect.CodeUnavailable), nil, failUnavailable},
		{"server deadline", wire(connect.CodeDeadlineExceeded), nil, failTimeout},
		{"server unknown", wire(connect.CodeUnknown), nil, failAmbiguous},
		{"server internal", wire(connect.CodeInternal), nil, failAmbiguous},
		{"server data loss", wire(connect.CodeDataLoss), nil, failAmbiguous},
		{"server canceled", wire(connect.CodeCanceled), nil, failAmbiguous},
		{"server not found", wire(connect.CodeNotFound), nil, failDefinite},
		{"server failed precondition", wire(connect.CodeFailedPrecondition), nil, failDefinite},
		{"server invalid argument", wire(connect.CodeInvalidArgument), nil, failDefinite},
		{"server permission denied", wire(connect.CodePermissionDenied), nil, failDefinite},
		{"server resource exhausted", wire(connect.CodeResourceExhausted), nil, failDefinite},
		{"attempt timeout", local(connect.CodeDeadlineExceeded, context.DeadlineExceeded), nil, failTimeout},
		{"caller deadline", local(connect.CodeDeadlineExceeded, context.DeadlineExceeded),
			context.DeadlineExceeded, failCallerDone},
		{"caller canceled", local(connect.CodeCanceled, context.Canceled), context.Canceled, failCallerDone},
		{"server answer as the caller gives up", wire(connect.CodeNotFound), context.Canceled, failDefinite},
		{"server unavailable as the caller gives up", wire(connect.CodeUnavailable), context.Canceled, failUnavailable},
		{"server enforced the caller's deadline", wire(connect.CodeDeadlineExceeded), context.DeadlineExceeded, failCallerDone},
		{"connection reset", local(connect.CodeCanceled, read), nil, failTransport},
		{"unexpected EOF", local(connect.CodeUnavailable, fmt.Errorf("Post: %w", errors.New("EOF"))), nil, failTransport},
		{"RST_STREAM", local(connect.CodeInternal, errors.New("stream error")), nil, failTransport},
		{"HTTP 404", local(connect.CodeUnimplemented, errors.New("HTTP status 404")), nil, failDefinite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err, tt.callerErr); got != tt.want {
				t.Errorf("classify = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		f                     failure
		readRetry             bool
		writeRetry, writeUnkn bool
	}{
		{failNotSent, true, true, false},
		{failUnavailable, true, true, false},
		{failTimeout, true, false, true},
		{failTransport, true, false, true},
		{failCallerDone, false, false, true},
		{failAmbiguous, false, false, true},
		{failDefinite, false, false, false},
		{failClosed, false, false, false},
	}
	for _, tt := range tests {
		if retry, unknown := decide(false, tt.f); retry != tt.readRetry || unknown {
			t.Errorf("decide(read, %d) = %v, %v; want %v, false", tt.f, retry, unknown, tt.readRetry)
		}
		if retry, unknown := decide(true, tt.f); retry != tt.writeRetry || unknown != tt.writeUnkn {
			t.Errorf("decide(write, %d) = %v, %v; want %v, %v", tt.f, retry, unknown, tt.writeRetry, tt.writeUnkn)
		}
	}
}

func TestBackoff(t *testing.T) {
	base, maxWait := 50*time.Millisecond, time.Second
	tests := []struct {
		n    int
		want time.Duration // upper bound; lower bound is want/2
	}{
		{1, 50 * time.Millisecond},
		{2, 100 * time.Millisecond},
		{3, 200 * time.Millisecond},
		{5, 800 * time.Millisecond},
		{6, time.Second},
		{60, time.Second}, // no overflow
	}
	for _, tt := range tests {
		for range 100 {
			got := backoff(tt.n, base, maxWait)
			if got < tt.want/2 || got > tt.want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", tt.n, got, tt.want/2, tt.want)
			}
		}
	}
}
