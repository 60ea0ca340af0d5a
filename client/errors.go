package client

import (
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// Sentinel errors. Every error a call returns is an *Error; test it with
// errors.Is against these, or with connect.CodeOf for the Connect code. A
// code means different things on different calls, so some sentinels match
// only the calls named below.
var (
	// ErrNotFound: Get of a key that does not exist (CodeNotFound on a get).
	ErrNotFound = errors.New("client: key not found")
	// ErrCompareFailed: a compare-and-swap (IfModRevision) of a Put or
	// Delete did not hold (CodeFailedPrecondition on put, delete or txn).
	// CurrentModRevision tells the key's actual mod revision when the server
	// sent it.
	ErrCompareFailed = errors.New("client: compare failed")
	// ErrRefused: the cluster refused a membership change
	// (CodeFailedPrecondition on a Cluster call): it would break the quorum,
	// or the member was removed. The message gives the server's reason.
	ErrRefused = errors.New("client: membership change refused")
	// ErrNotMember: the ID named by a Cluster call is not a member
	// (CodeNotFound on a Cluster call).
	ErrNotMember = errors.New("client: not a member")
	// ErrUnavailable: no endpoint could serve the call: none reachable, or
	// every node answered Unavailable (no leader, no quorum, not caught up).
	ErrUnavailable = errors.New("client: cluster unavailable")
	// ErrInvalidArgument: the server rejected the request as malformed
	// (CodeInvalidArgument). Retrying will not help.
	ErrInvalidArgument = errors.New("client: invalid argument")
	// ErrPermissionDenied: the server refused the call
	// (CodePermissionDenied): for membership changes, Config.JoinSecret is
	// missing or wrong.
	ErrPermissionDenied = errors.New("client: permission denied")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("client: closed")
	// ErrTLS: the client's TLS settings do not fit the node's: its
	// certificate is not signed by a CA in Config.TLS, or not for the
	// endpoint's name; it requires a client certificate and got none or
	// one it does not trust; or one side speaks TLS and the other does not.
	// The message says which and what to pass. Such a call fails at its
	// first attempt: retrying would meet the same settings.
	ErrTLS = errors.New("client: TLS settings do not fit the node's")
)

// Op names, as in Error.Op.
const (
	opPut            = "put"
	opGet            = "get"
	opDelete         = "delete"
	opRange          = "range"
	opTxn            = "txn"
	opMembers        = "members"
	opStatus         = "status"
	opPromote        = "promote"
	opRemove         = "remove"
	opTransferLeader = "transfer-leader"
	opSnapshot       = "snapshot"
)

// isKVWrite reports whether op is a write of the KV service, where
// FailedPrecondition is a failed compare.
func isKVWrite(op string) bool {
	return op == opPut || op == opDelete || op == opTxn
}

// isClusterOp reports whether op is a call of the Cluster service, where
// FailedPrecondition is a refused membership change and NotFound names an
// ID that is not a member.
func isClusterOp(op string) bool {
	switch op {
	case opMembers, opStatus, opPromote, opRemove, opTransferLeader, opSnapshot:
		return true
	}
	return false
}

// Error is the error every call returns. It wraps the last attempt's error,
// normally a *connect.Error, so connect.CodeOf(err) and errors.As work.
type Error struct {
	// Op is the call: "put", "get", "delete", "range", "txn", "members",
	// "status", "promote", "remove", "transfer-leader", "snapshot",
	// "watch" or "watch-members".
	Op string
	// Key is the key of a single-key call, nil otherwise.
	Key []byte
	// Member is the member a Promote, Remove or TransferLeader names, 0
	// otherwise.
	Member MemberID
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
		return code == connect.CodeNotFound && e.Op == opGet
	case ErrCompareFailed:
		return code == connect.CodeFailedPrecondition && isKVWrite(e.Op)
	case ErrRefused:
		return code == connect.CodeFailedPrecondition && isClusterOp(e.Op)
	case ErrNotMember:
		return code == connect.CodeNotFound && isClusterOp(e.Op)
	case ErrUnavailable:
		return e.kind != failTLS && (code == connect.CodeUnavailable || e.kind == failNotSent || e.kind == failUnavailable)
	case ErrInvalidArgument:
		return code == connect.CodeInvalidArgument
	case ErrPermissionDenied:
		return code == connect.CodePermissionDenied
	case ErrClosed:
		return e.kind == failClosed
	case ErrTLS:
		return e.kind == failTLS
	case ErrCompacted:
		return code == connect.CodeOutOfRange
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
	if e.Member != 0 {
		fmt.Fprintf(&b, " member %d", e.Member)
	}
	b.WriteString(": ")
	tried := strings.Join(e.Endpoints, ",")
	code := connect.CodeOf(e.Err)
	switch {
	case e.kind == failClosed:
		b.WriteString("client is closed")
	case e.kind == failTLS:
		fmt.Fprintf(&b, "TLS%s: %s (%v)", e.at(), tlsProblem(e.Err), e.Err)
	case e.unknown && e.Op == opSnapshot:
		fmt.Fprintf(&b, "outcome unknown (%v%s): the snapshot may or may not have been taken; "+
			"taking another is harmless", e.Err, e.at())
	case e.unknown && isClusterOp(e.Op):
		fmt.Fprintf(&b, "outcome unknown (%v%s): the change may or may not have been applied; "+
			"list the members before retrying", e.Err, e.at())
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
	case code == connect.CodeNotFound && e.Op == opGet:
		fmt.Fprintf(&b, "key not found%s", e.at())
	case code == connect.CodeNotFound && isClusterOp(e.Op):
		fmt.Fprintf(&b, "no such member: %s%s", serverMessage(e.Err), e.at())
	case code == connect.CodeFailedPrecondition && isClusterOp(e.Op):
		fmt.Fprintf(&b, "refused: %s%s", serverMessage(e.Err), e.at())
	case code == connect.CodeFailedPrecondition && isKVWrite(e.Op):
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

// serverMessage is the message of err without the code prefix that
// connect.Error.Error adds.
func serverMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) && ce.Message() != "" {
		return ce.Message()
	}
	return err.Error()
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
// unavailable, overloaded or slow, or (Aborted) a concurrent membership
// change won. For a write, check OutcomeUnknown too before retrying it; for
// a membership change, list the members first.
func IsTemporary(err error) bool {
	var e *Error
	if errors.As(err, &e) && e.kind == failTLS {
		return false
	}
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
