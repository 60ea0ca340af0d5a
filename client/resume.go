package client

import (
	"context"
	"time"
)

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
