package rpc

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/lni/dragonboat/v4"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/node"
)

// errorCodes is the one table from internal errors to Connect codes. The
// first match wins, so specific errors come before general ones.
//
// Unavailable means nothing was applied and the client may retry (it does,
// with backoff, on another endpoint). On KV calls FailedPrecondition means a
// failed compare (CAS); on Cluster calls, a refused membership change. DeadlineExceeded and Unknown on a write
// mean the outcome is unknown: the write may or may not have been applied.
//
// Answers that are the API's own, made from the request's facts rather
// than from an error of the layers below, set their code where they are
// made: a failed compare (kv.go compareFailed: FailedPrecondition with the
// key's current revision as a detail), a missing key (kv.go: NotFound), an
// invalid request (invalid, below), the membership guard (auth.go:
// PermissionDenied, and Unauthenticated without a client certificate),
// the stream's byte budgets (stream.go: ResourceExhausted), the watch
// (watch.go: FailedPrecondition without history, Unavailable while not
// ready, OutOfRange below the history) and health (mount.go: NotFound for
// an unknown service). Before the node runs, the server answers HTTP 503,
// which Connect, gRPC and gRPC-Web clients read as Unavailable
// (server/http.go).
var errorCodes = []struct {
	err    error
	code   connect.Code
	advice string
}{
	{node.ErrNotReady, connect.CodeUnavailable, ""},
	{membership.ErrPermissionDenied, connect.CodePermissionDenied, ""},
	{membership.ErrNotSameNode, connect.CodePermissionDenied, ""},
	{membership.ErrRemoved, connect.CodeFailedPrecondition, ""},
	{membership.ErrNoQuorum, connect.CodeFailedPrecondition, ""},
	{membership.ErrNotMember, connect.CodeNotFound, ""},
	{membership.ErrNoView, connect.CodeUnavailable, "retry, or ask another node"},
	{membership.ErrIdentityMismatch, connect.CodeAlreadyExists, ""},
	{membership.ErrBadFlags, connect.CodeInvalidArgument, ""},
	{node.ErrStopped, connect.CodeUnavailable, "the node is shutting down; retry on another endpoint"},
	{node.ErrBadConfig, connect.CodeInvalidArgument, ""},
	{node.ErrBadCommand, connect.CodeInternal, ""},
	{dragonboat.ErrShardNotReady, connect.CodeUnavailable, "no leader or the replica is not ready; retry with backoff"},
	{dragonboat.ErrShardNotInitialized, connect.CodeUnavailable, "the replica is still recovering; retry with backoff"},
	{dragonboat.ErrSystemBusy, connect.CodeUnavailable, "the node is overloaded; retry with backoff"},
	{dragonboat.ErrClosed, connect.CodeUnavailable, "the node is shutting down; retry on another endpoint"},
	{dragonboat.ErrShardNotFound, connect.CodeUnavailable, "the replica is not running on this node; retry on another endpoint"},
	{dragonboat.ErrShardClosed, connect.CodeUnknown, "the node stopped while the request was in flight; the outcome is unknown"},
	{dragonboat.ErrAborted, connect.CodeUnknown, "the request was aborted; the outcome is unknown"},
	{dragonboat.ErrTimeout, connect.CodeDeadlineExceeded, "timed out (no quorum?); for a write the outcome is unknown"},
	{dragonboat.ErrCanceled, connect.CodeCanceled, ""},
	{dragonboat.ErrRejected, connect.CodeAborted, "rejected by Raft (a concurrent membership change?); read the membership and retry"},
	{dragonboat.ErrPayloadTooBig, connect.CodeInvalidArgument, "the request is too large"},
	{context.DeadlineExceeded, connect.CodeDeadlineExceeded, ""},
	{context.Canceled, connect.CodeCanceled, ""},
}

// toConnect converts an error from the node or Dragonboat to a Connect error.
func toConnect(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			if e.advice != "" {
				return connect.NewError(e.code, fmt.Errorf("%w: %s", err, e.advice))
			}
			return connect.NewError(e.code, err)
		}
	}
	return connect.NewError(connect.CodeInternal, err)
}

func invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}
