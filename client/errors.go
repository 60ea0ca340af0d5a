package client

import (
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// Sentinel errors. Every error a call returns is an *Error; test it with
// errors.Is against these, or with connect.CodeOf for the Connect code.
var (
	// ErrNotFound: the key does not exist (CodeNotFound).
	ErrNotFound = errors.New("client: key not found")
	// ErrCompareFailed: a compare-and-swap (IfModRevision) did not hold
	// (CodeFailedPrecondition). CurrentModRevision tells the key's actual mod
	// revision when the server sent it.
	ErrCompareFailed = errors.New("client: compare failed")
	// ErrUnavailable: no endpoint could serve the call: none reachable, or
	// every node answered Unavailable (no leader, no quorum, not caught up).
	ErrUnavailable = errors.New("client: cluster unavailable")
	// ErrInvalidArgument: the server rejected the request as malformed
	// (CodeInvalidArgument). Retrying will not help.
	ErrInvalidArgument = errors.New("client: invalid argument")
	// ErrPermissionDenied: the server refused the call (CodePermissionDenied).
	ErrPermissionDenied = errors.New("client: permission denied")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("client: closed")
)

// Error is the error every call returns. It wraps the last attempt's error,
// normally a *connect.Error, so connect.CodeOf(err) and errors.As work.
type Error struct {
	// Op is the call: "put", "get", "delete", "range", "txn", "members",
	// "status".
	Op string
	// Key is the key of a single-key call, nil otherwise.
	Key []byte
	// Endpoints are the endpoints tried, in order, each listed once.
	Endpoints []string
	// Attempts is how many attempts were made.
	Attempts int
	// Err is the last attempt's error.
	Err error

	kind    failure
	unknown bool
	last    string // endpoint of the last attempt
	ctxErr  error  // the caller's ctx.Err() when the call ended because of it
}

// Unwrap returns the last attempt's error.
func (e *Error) Unwrap() error { return e.Err }

// Is maps the Connect code (and how the call failed) to the sentinels. A
// call ended by its ctx also matches context.Canceled or
// context.DeadlineExceeded.
func (e *Error) Is(target error) bool {
	if e.ctxErr != nil && errors.Is(e.ctxErr, target) {
		return true
	}
	code := connect.CodeOf(e.Err)
	switch target {
	case ErrNotFound:
		return code == connect.CodeNotFound
	case ErrCompareFailed:
		return code == connect.CodeFailedPrecondition
	case ErrUnavailable:
		return code == connect.CodeUnavailable || e.kind == failNotSent || e.kind == failUnavailable
	case ErrInvalidArgument:
		return code == connect.CodeInvalidArgument
	case ErrPermissionDenied:
		return code == connect.CodePermissionDenied
	case ErrClosed:
		return e.kind == failClosed
	}
	return false
}

// Error says what failed, where, and what to do about it.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Key != nil {
		fmt.Fprintf(&b, " %q", truncateKey(e.Key))
	}
	b.WriteString(": ")
	tried := strings.Join(e.Endpoints, ",")
	code := connect.CodeOf(e.Err)
	switch {
	case e.kind == failClosed:
		b.WriteString("client is closed")
	case e.unknown:
		fmt.Fprintf(&b, "outcome unknown (%v%s): the write may or may not have been applied; "+
			"read the key before retrying", e.Err, e.at())
	case e.kind == failNotSent:
		fmt.Fprintf(&b, "no endpoint reachable: tried %s; is kvd running? check --endpoints (last error: %v)",
			tried, e.Err)
	case e.kind == failCallerDone && e.Attempts == 0:
		fmt.Fprintf(&b, "%v (before any attempt)", e.Err)
	case e.kind == failCallerDone:
		fmt.Fprintf(&b, "%v (after %d attempt(s), tried %s)", e.Err, e.Attempts, tried)
	case code == connect.CodeUnavailable:
		fmt.Fprintf(&b, "cluster unavailable after %d attempt(s), tried %s: %v; "+
			"a leader election may be in progress or quorum lost, retry later", e.Attempts, tried, e.Err)
	case code == connect.CodeNotFound:
		fmt.Fprintf(&b, "key not found%s", e.at())
	case code == connect.CodeFailedPrecondition:
		b.WriteString("compare failed")
		if rev, ok := CurrentModRevision(e); ok {
			fmt.Fprintf(&b, ": current mod revision is %d", rev)
		}
		fmt.Fprintf(&b, " (%v); re-read the key and retry with its mod revision", e.Err)
	case code == connect.CodeUnimplemented:
		fmt.Fprintf(&b, "%v%s; is the endpoint a kvd API address of a compatible version?", e.Err, e.at())
	default:
		fmt.Fprintf(&b, "%v%s", e.Err, e.at())
	}
	return b.String()
}

// at names the endpoint of the last attempt, if there was one.
func (e *Error) at() string {
	if e.last == "" {
		return ""
	}
	return " at " + e.last
}

func truncateKey(k []byte) string {
	const max = 64
	if len(k) > max {
		return string(k[:max]) + "..."
	}
	return string(k)
}

// IsTemporary reports whether err is expected to pass: the cluster was
// unavailable, overloaded or slow. For a write, check OutcomeUnknown too
// before retrying it.
func IsTemporary(err error) bool {
	var e *Error
	if errors.As(err, &e) && e.kind == failNotSent {
		return true
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded,
		connect.CodeResourceExhausted, connect.CodeAborted:
		return true
	}
	return false
}

// OutcomeUnknown reports whether err came from a write that may or may not
// have been applied: the request may have reached a node and been committed
// before the deadline passed or the connection broke. The client never
// retries such a write itself, because a retried write is not the same
// request: a retried Put with IfModRevision would fail its compare against
// the revision its own first attempt wrote and report a false
// ErrCompareFailed, and a retried Txn could apply twice. Read the key to
// find out what happened.
func OutcomeUnknown(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.unknown
}

// CurrentModRevision returns the key's actual mod revision from a
// compare-failed error (0 = the key does not exist), when the server attached
// it as a kvd.v1.KeyValue error detail.
func CurrentModRevision(err error) (uint64, bool) {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeFailedPrecondition {
		return 0, false
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		if kv, ok := v.(*kvdv1.KeyValue); ok {
			return kv.GetModRevision(), true
		}
	}
	return 0, false
}
