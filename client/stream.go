package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

const (
	// maxStreamCalls is the most calls in one StreamRequest (the server's limit).
	maxStreamCalls = 1024
	// maxStreamMessages is the most StreamRequests in flight on a stream.
	// While that many await their answer, new calls queue and leave
	// together in the next message: under load messages grow instead of
	// multiplying, and a lone call still leaves at once.
	maxStreamMessages = 2
)

// errNotSent marks a stream call that provably never reached the server: it
// was still queued, or the stream never connected. Such calls are retried
// like a failed dial, writes included.
var errNotSent = errors.New("not sent")

// pendingCall is one call waiting on a stream.
type pendingCall struct {
	call     *kvdv1.StreamCall
	key      []byte // for the compare-failed detail
	sent     bool
	canceled bool
	res      *kvdv1.StreamResult
	err      error
	done     chan struct{}
}

// stream is one kvd.v1.KV/Stream to one endpoint, shared by every call the
// client sends there. Callers queue calls; one goroutine sends everything
// queued as one message (so calls that arrive while a send is in progress
// travel together), another hands each result to its caller by id. When the
// stream breaks, every waiting call fails and the endpoint opens a new one
// for the next call.
type stream struct {
	cancel context.CancelFunc
	bidi   *connect.BidiStreamForClient[kvdv1.StreamRequest, kvdv1.StreamResponse]
	wake   chan struct{}

	// sending is held while a message is marshaled and sent, so that a
	// caller giving up on a call in it can wait until its key and value are
	// no longer read (lock order: mu, then sending).
	sending sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	inLimbo int // messages sent and not yet answered
	queue   []*pendingCall
	waiting map[uint64]*pendingCall
	broken  error // set once; the stream is not used after
}

func openStream(kv interface {
	Stream(context.Context) *connect.BidiStreamForClient[kvdv1.StreamRequest, kvdv1.StreamResponse]
}) *stream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{
		cancel:  cancel,
		bidi:    kv.Stream(ctx),
		wake:    make(chan struct{}, 1),
		waiting: make(map[uint64]*pendingCall),
	}
	go s.sendLoop(ctx)
	go s.receiveLoop()
	return s
}

func (s *stream) isBroken() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken != nil
}

// close ends the stream; calls still waiting fail.
func (s *stream) close() {
	s.fail(fmt.Errorf("%w: the client was closed", ErrClosed))
	// Ending the request side lets the server end the stream, which ends
	// receiveLoop's Receive (cancel alone may leave it waiting).
	s.sending.Lock()
	_ = s.bidi.CloseRequest()
	s.sending.Unlock()
	s.cancel()
}

// do sends c and waits for its result, or for ctx. A StreamError comes
// back as the *connect.Error the unary call would have returned.
func (s *stream) do(ctx context.Context, c *kvdv1.StreamCall, key []byte) (*kvdv1.StreamResult, error) {
	p := &pendingCall{call: c, key: key, done: make(chan struct{})}
	s.mu.Lock()
	if s.broken != nil {
		s.mu.Unlock()
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("stream: %w", errNotSent))
	}
	s.nextID++
	c.Id = s.nextID
	s.waiting[c.Id] = p
	s.queue = append(s.queue, p)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		s.mu.Lock()
		p.canceled = true
		delete(s.waiting, c.Id)
		sent := p.sent
		s.mu.Unlock()
		if sent {
			s.sending.Lock()
			s.sending.Unlock() //nolint:staticcheck // waits for the send in progress
		}
		return nil, ctxError(ctx.Err())
	}
	if p.err != nil {
		return nil, p.err
	}
	if e := p.res.GetError(); e != nil {
		return nil, resultError(e, p.key)
	}
	return p.res, nil
}

// resultError turns a StreamError into the server's error as a unary call
// reports it, so that retries and errors work the same on both paths.
func resultError(e *kvdv1.StreamError, key []byte) error {
	ce := connect.NewWireError(connect.Code(e.GetCode()), errors.New(e.GetMessage()))
	if e.CurrentModRevision != nil {
		if d, err := connect.NewErrorDetail(&kvdv1.KeyValue{Key: key, ModRevision: e.GetCurrentModRevision()}); err == nil {
			ce.AddDetail(d)
		}
	}
	return ce
}

func (s *stream) sendLoop(ctx context.Context) {
	var batch []*kvdv1.StreamCall
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		for {
			s.mu.Lock()
			if s.broken != nil {
				s.mu.Unlock()
				return
			}
			if s.inLimbo >= maxStreamMessages {
				s.mu.Unlock()
				break // receiveLoop wakes us when an answer arrives
			}
			batch = batch[:0]
			n := 0
			for _, p := range s.queue {
				n++
				if p.canceled {
					continue
				}
				p.sent = true
				batch = append(batch, p.call)
				if len(batch) == maxStreamCalls {
					break
				}
			}
			rest := copy(s.queue, s.queue[n:])
			clear(s.queue[rest:])
			s.queue = s.queue[:rest]
			if len(batch) == 0 {
				s.mu.Unlock()
				break
			}
			s.inLimbo++
			s.sending.Lock()
			s.mu.Unlock()
			err := s.bidi.Send(&kvdv1.StreamRequest{Calls: batch})
			s.sending.Unlock()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					s.fail(err)
				}
				// Else the server ended the stream: receiveLoop gets why.
				return
			}
		}
	}
}

func (s *stream) receiveLoop() {
	for {
		resp, err := s.bidi.Receive()
		if err != nil {
			s.fail(err)
			return
		}
		s.mu.Lock()
		s.inLimbo-- // the server answers each message with one message
		for _, r := range resp.Results {
			if p, ok := s.waiting[r.Id]; ok {
				delete(s.waiting, r.Id)
				p.res = r
				close(p.done)
			}
		}
		more := len(s.queue) > 0
		s.mu.Unlock()
		if more {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
}

// fail breaks the stream with err: calls that were sent fail with it (a
// write's outcome is then unknown), calls still queued, or all of them if
// the stream never connected, fail as not sent.
func (s *stream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return
	}
	s.broken = err
	s.cancel()
	// A failed TLS handshake is a failed dial: nothing reached the server.
	neverConnected := isDialError(err) || tlsProblem(err) != ""
	// The stream's end is not any one call's answer: even an Unavailable
	// from the server says nothing of the calls it had received, so sent
	// calls fail like a broken connection (writes: outcome unknown).
	broke := connect.NewError(connect.CodeOf(err), fmt.Errorf("stream broke: %w", err))
	for id, p := range s.waiting {
		delete(s.waiting, id)
		if p.sent && !neverConnected {
			p.err = broke
		} else {
			p.err = connect.NewError(connect.CodeUnavailable, fmt.Errorf("stream: %w: %w", errNotSent, err))
		}
		close(p.done)
	}
	s.queue = nil
}
