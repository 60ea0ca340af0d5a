package client

import (
	"context"
	"fmt"
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

// resumeStream runs a long-lived stream (Watch, WatchMembers) until it
// ends for good: attempt runs one stream on an endpoint until it fails;
// final says which failures end it (nil: another endpoint may do). After
// any other failure it moves to the next endpoint and backs off, the
// backoff starting over once an attempt delivered something. It returns
// ctx's error when ctx ended, else the *Error of the final failure.
func (c *Client) resumeStream(ctx context.Context, op string, key []byte,
	attempt func(ctx context.Context, ep *endpoint) (delivered bool, err error), final func(error) error) error {
	var tried []string
	for failures := 0; ; {
		idx, ep := c.current()
		tried = appendOnce(tried, ep.name)
		delivered, err := attempt(ctx, ep)
		if delivered {
			failures, tried = 0, tried[len(tried)-1:]
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if f := final(err); f != nil {
			return &Error{Op: op, Key: key, Endpoints: tried, Attempts: failures + 1, Err: f}
		}
		c.advance(idx)
		failures++
		select {
		case <-ctx.Done():
		case <-time.After(backoff(failures, c.cfg.BackoffBase, min(c.cfg.BackoffMax, 2*time.Second))):
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
