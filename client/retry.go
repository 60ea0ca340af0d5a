package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"time"

	"connectrpc.com/connect"
)

// failure is how one attempt failed, as far as retrying is concerned.
type failure int

const (
	failNone failure = iota
	// failNotSent: dialing the endpoint failed, so the request never left
	// this process. Safe to retry anything.
	failNotSent
	// failUnavailable: the server answered Unavailable, which kvd sends only
	// for requests it did not apply (no leader, not ready, not caught up).
	failUnavailable
	// failTimeout: this attempt's deadline passed (or the server said
	// DeadlineExceeded) while the caller's ctx is still live.
	failTimeout
	// failTransport: the connection broke after the request may have been
	// written.
	failTransport
	// failCallerDone: the caller's ctx was canceled or passed its deadline.
	failCallerDone
	// failAmbiguous: the server answered Unknown, Internal, DataLoss or
	// Canceled: something went wrong at an unknown point.
	failAmbiguous
	// failDefinite: the server gave a definite answer (NotFound,
	// FailedPrecondition, InvalidArgument, ...). Retrying gives the same.
	failDefinite
	// failClosed: the Client was closed.
	failClosed
	// failTLS: the client's TLS settings do not fit the node's (see
	// tlsProblem). The request never reached kvd, and a retry meets the
	// same settings.
	failTLS
)

// classify decides how an attempt failed. callerErr is the caller's
// ctx.Err() after the attempt.
func classify(err, callerErr error) failure {
	if err == nil {
		return failNone
	}
	if tlsProblem(err) != "" {
		return failTLS
	}
	if errors.Is(err, errNotSent) || (!connect.IsWireError(err) && isDialError(err)) {
		return failNotSent
	}
	code := connect.CodeOf(err)
	if connect.IsWireError(err) {
		// The server answered: its answer stands even if the caller's
		// deadline passed meanwhile.
		switch code {
		case connect.CodeUnavailable:
			return failUnavailable
		case connect.CodeDeadlineExceeded:
			if callerErr != nil {
				return failCallerDone
			}
			return failTimeout
		case connect.CodeUnknown, connect.CodeInternal, connect.CodeDataLoss, connect.CodeCanceled:
			return failAmbiguous
		}
		return failDefinite
	}
	if callerErr != nil {
		return failCallerDone
	}
	// Synthesized by the client: connect maps transport errors to
	// Unavailable, resets to Canceled, RST_STREAM to Internal.
	switch code {
	case connect.CodeDeadlineExceeded:
		return failTimeout
	case connect.CodeUnavailable, connect.CodeCanceled, connect.CodeInternal, connect.CodeUnknown:
		return failTransport
	}
	// E.g. Unimplemented from an HTTP 404 (not a kvd endpoint), or
	// ResourceExhausted for a message over the size limit.
	return failDefinite
}

// isDialError reports whether err is a failure to connect: refused, no
// route, DNS, or a dial timeout.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// decide says whether to retry an attempt that failed with f, and whether
// the outcome of a write is unknown. It is the whole retry policy:
//
//   - anything is retried when the request provably did not reach a server
//     (dial failure) or the server said Unavailable (it did not apply it);
//   - reads are also retried after a timeout or a broken connection;
//   - writes are not: the request may have been applied, so its outcome is
//     unknown, and only the application can decide what to do (see
//     OutcomeUnknown);
//   - TLS settings that do not fit the node's are not retried at all: the
//     next attempt would meet the same settings, and only the operator can
//     fix them. Nothing reached kvd, so the outcome is known.
func decide(write bool, f failure) (retry, unknown bool) {
	switch f {
	case failNotSent, failUnavailable:
		return true, false
	case failTimeout, failTransport:
		return !write, write
	case failCallerDone, failAmbiguous:
		return false, write
	}
	return false, false
}

// backoff is the wait before retry n (n ≥ 1): a random duration in [d/2, d]
// with d = min(max, base·2ⁿ⁻¹). The jitter spreads out clients that all lost
// the same leader.
func backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// call is one logical call: its name, its key or member (for messages),
// whether it writes, and whether it must stay on one node.
type call struct {
	op     string
	key    []byte
	member MemberID
	write  bool
	// pinned: every attempt goes to the endpoint that was current when the
	// call began, and a failure does not move the client off it.
	pinned bool
}

// do runs attempt against the current endpoint, failing over and retrying
// as decide allows, within MaxAttempts and ctx.
func do[T any](ctx context.Context, c *Client, cl call, attempt func(ctx context.Context, ep *endpoint) (T, error)) (T, error) {
	var zero T
	r := &retrier{ctx: ctx, c: c, cl: cl, allDial: true}
	if c.closed.Load() {
		return zero, r.fail(ErrClosed, failClosed, false, 0)
	}
	lead := -1
	if !cl.pinned {
		c.findLeader(ctx)
		if cl.write {
			lead = c.writeLeader(ctx)
		}
	}
	pinIdx, pinEp := c.current()
	for n := 1; n <= c.cfg.MaxAttempts; n++ {
		if err := ctx.Err(); err != nil {
			// Nothing was sent in this attempt; report the last real failure
			// if there was one.
			if r.lastErr == nil {
				r.lastErr, r.lastKind = ctxError(err), failCallerDone
			}
			return zero, r.fail(r.lastErr, r.lastKind, false, n-1)
		}
		idx, ep := c.current()
		if cl.pinned {
			idx, ep = pinIdx, pinEp
		} else if lead >= 0 {
			idx, ep = uint32(lead), c.eps[lead]
		}
		r.last, r.tried = ep.name, appendOnce(r.tried, ep.name)
		actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		res, err := attempt(actx, ep)
		cancel()
		kind := classify(err, callerErr(ctx))
		if kind == failNone {
			return res, nil
		}
		if lead >= 0 && kind != failDefinite && kind != failCallerDone {
			// The leader did not answer: later attempts (and writes) go
			// to the current endpoint until it is found again.
			c.forgetLeader(lead)
			lead = -1
		}
		if err := r.failed(idx, ep, err, kind, n); err != nil {
			return zero, err
		}
	}
	return zero, r.fail(r.lastErr, r.lastKind, false, c.cfg.MaxAttempts)
}

// retrier is one call's state across its attempts: where it went and how
// the last attempt failed.
type retrier struct {
	ctx      context.Context
	c        *Client
	cl       call
	tried    []string
	last     string
	lastErr  error
	lastKind failure
	allDial  bool // every attempt so far failed to dial
}

// failed takes attempt n's failure: it returns the call's error, or nil
// when the call goes on (after failing over and the backoff).
func (r *retrier) failed(idx uint32, ep *endpoint, err error, kind failure, n int) error {
	err, kind = r.explain(ep, err, kind)
	retry, unknown := decide(r.cl.write, kind)
	r.lastErr, r.lastKind = err, kind
	r.allDial = r.allDial && kind == failNotSent
	if !retry {
		if kind == failTLS && !r.cl.pinned {
			// This call fails now with the hint; the next one tries the
			// next node, in case only this node is set up wrong.
			r.c.advance(idx)
		}
		return r.fail(err, kind, unknown, n)
	}
	if !r.cl.pinned {
		r.c.advance(idx)
	}
	if n == r.c.cfg.MaxAttempts {
		return r.fail(err, kind, false, n)
	}
	wait := backoff(n, r.c.cfg.BackoffBase, r.c.cfg.BackoffMax)
	if dl, ok := r.ctx.Deadline(); ok && time.Until(dl) < wait {
		// Sleeping past the caller's deadline only delays the error.
		return r.fail(err, kind, false, n)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return r.fail(err, kind, false, n)
	case <-t.C:
		return nil
	}
}

// explain sharpens a failure: no answer where something listens may be
// TLS on one side only (diagnosed with one handshake); a call whose ctx
// ended carries ctx's code.
func (r *retrier) explain(ep *endpoint, err error, kind failure) (error, failure) {
	if kind == failTransport || (kind == failNotSent && !isDialError(err)) {
		if hint := diagnose(r.ctx, ep.url, r.c.cfg.TLS, r.c.cfg.HTTPClient == nil, r.c.cfg.DialTimeout); hint != nil {
			return &tlsMismatch{hint: hint, err: err}, failTLS
		}
	}
	if kind == failCallerDone {
		if want := connect.CodeOf(ctxError(callerErr(r.ctx))); connect.CodeOf(err) != want {
			err = connect.NewError(want, err)
		}
	}
	return err, kind
}

// fail is the call's error after attempts attempts.
func (r *retrier) fail(err error, kind failure, unknown bool, attempts int) error {
	if kind == failNotSent && !r.allDial {
		// Some endpoint was reached and answered Unavailable: the
		// cluster is up but cannot serve.
		kind = failUnavailable
	}
	e := &Error{Op: r.cl.op, Key: r.cl.key, Member: r.cl.member, Endpoints: r.tried, Attempts: attempts,
		Err: err, kind: kind, unknown: unknown, last: r.last}
	// Whatever failed last, a call whose ctx ended also matches
	// context.Canceled or DeadlineExceeded.
	e.ctxErr = callerErr(r.ctx)
	return e
}

// callerErr is ctx.Err(), or context.DeadlineExceeded as soon as the
// deadline has passed: a server enforcing the propagated deadline may answer
// before ctx's timer fires.
func callerErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// A deadline this close counts as passed: the attempt's own deadline
	// (sent to the server as a timeout) can end it a moment before the
	// caller's timer fires.
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < deadlineSlack {
		return context.DeadlineExceeded
	}
	return nil
}

// deadlineSlack: see callerErr.
const deadlineSlack = 5 * time.Millisecond

// ctxError turns a context error into a *connect.Error with the matching code.
func ctxError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeCanceled, err)
}

func appendOnce(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
