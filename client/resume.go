package client

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
)

// streamSilence: a node sends something at least every few seconds on a
// long-lived stream (Watch: progress, every second by default;
// WatchMembers: a heartbeat after 5 s without a message). One silent for
// longer is taken for lost, a partition or a hung process that closes no
// connection (HTTP/1.1 has no pings: Config.Unary, gRPC-Web), and the
// stream moves to the next endpoint. A variable for tests.
var streamSilence = 15 * time.Second

// A verdict says what the failure of one stream means for the next one.
type verdict int

const (
	// nodeFailed: the node died, stopped or went silent. The stream
	// resumes on the next endpoint after a backoff.
	nodeFailed verdict = iota
	// notHere: this node cannot serve the request, another may (a watch
	// from below the node's history). Each endpoint is tried once, at once.
	notHere
	// endStream: no node would serve it (a bad request, refused
	// credentials). The stream ends.
	endStream
)

// resumeStream runs a long-lived stream (Watch, WatchMembers) until it
// ends for good: attempt runs one stream on an endpoint until it fails;
// judge says what the failure means and the error to end with. After
// nodeFailed it moves to the next endpoint and backs off. After the first
// notHere it tries every endpoint once, in order, going on at once after
// notHere (after the backoff after nodeFailed), and ends with the last
// notHere error when all were tried; notHere leaves the client's current
// endpoint as it is, the node serves other calls. An attempt that
// delivered something starts the backoff and that record over. It returns
// ctx's error when ctx ended, else the *Error of the final failure.
func (c *Client) resumeStream(ctx context.Context, op string, key []byte,
	attempt func(ctx context.Context, ep *endpoint) (delivered bool, err error), judge func(error) (verdict, error)) error {
	var (
		tried   []string // endpoints tried since the last delivery, in order
		refusal error    // the last notHere error since the last delivery
		round   []bool   // by index, the endpoints tried since the first refusal
	)
	for failures, i := 0, 0; ; {
		if round == nil {
			cur, _ := c.current()
			i = int(cur) % len(c.eps)
		} else {
			for round[i] {
				i = (i + 1) % len(round)
			}
		}
		ep := c.eps[i]
		tried = appendOnce(tried, ep.name)
		delivered, err := attempt(ctx, ep)
		if delivered {
			failures, tried, refusal, round = 0, tried[len(tried)-1:], nil, nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		v, f := judge(err)
		if v == notHere {
			refusal = f
			if round == nil {
				round = make([]bool, len(c.eps))
			}
		}
		if round != nil {
			round[i] = true
			if v != endStream && !slices.Contains(round, false) {
				v, f = endStream, refusal // every endpoint tried: none can
			}
		}
		failures++
		switch v {
		case endStream:
			return &Error{Op: op, Key: key, Endpoints: tried, Attempts: failures, Err: f}
		case nodeFailed:
			c.advance(uint32(i))
			select {
			case <-ctx.Done():
			case <-time.After(backoff(failures, c.cfg.BackoffBase, min(c.cfg.BackoffMax, 2*time.Second))):
			}
		}
	}
}

// receive runs one server stream on the endpoint named ep: open starts it,
// handle takes each message (an error from handle ends the stream with
// it). A node that sends nothing for silence is taken for lost: the stream
// is cancelled and receive says so. The time handle takes is not counted:
// a slow reader is not a silent node. A stream the node ends without an
// error is a failure too (the node stopped): the caller resumes elsewhere.
func receive[T any](ctx context.Context, ep string, silence time.Duration,
	open func(context.Context) (*connect.ServerStreamForClient[T], error),
	handle func(ctx context.Context, m *T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var quiet atomic.Bool // the node was silent too long
	silent := time.AfterFunc(silence, func() { quiet.Store(true); cancel() })
	defer silent.Stop()
	errSilent := fmt.Errorf("%s sent nothing for %s", ep, silence)
	stream, err := open(ctx)
	if err != nil {
		if quiet.Load() {
			return errSilent
		}
		return err
	}
	defer stream.Close()
	for stream.Receive() {
		if !silent.Stop() {
			break // it fired as the message came
		}
		if err := handle(ctx, stream.Msg()); err != nil {
			return err
		}
		silent.Reset(silence)
	}
	if quiet.Load() {
		return errSilent
	}
	if err := stream.Err(); err != nil {
		return err
	}
	return fmt.Errorf("%s ended the stream", ep) // the node stopped: resume elsewhere
}

// sendFinal sends a watch's last message, unless ctx ended while out is
// full: a caller that cancelled may have stopped reading, and the
// goroutine must not wait for it forever.
func sendFinal[T any](ctx context.Context, out chan<- T, final T) {
	select {
	case out <- final:
		return
	default:
	}
	select {
	case out <- final:
	case <-ctx.Done():
	}
}
