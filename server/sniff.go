package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The API port serves every protocol on one listener; the router tells a
// connection's protocol apart by its first bytes, as etcd does with cmux:
//
//   - HTTP/1.1 (plaintext, or TLS without ALPN h2) → net/http (Connect,
//     gRPC-Web, HTTP/JSON, health, metrics, the UI);
//   - HTTP/2 (h2c prior knowledge, or TLS with ALPN h2) whose first
//     request is gRPC with the proto codec (content-type application/grpc
//     or application/grpc+proto) → grpc-go's server, whose transport costs
//     far less per call than connect-go's gRPC on net/http;
//   - other HTTP/2 (Connect over h2, gRPC with another codec) → net/http's
//     HTTP/2 (x/net/http2, which, unlike net/http's own, takes a
//     connection already past TLS and gives handlers its state).
//
// A connection keeps the server of its first request: a client that mixes
// gRPC with the Connect protocol on one HTTP/2 connection must begin with
// a Connect call (connect-go serves both). Under TLS the handshake happens
// here, once; the decrypted connection carries its TLS state to both
// servers (Request.TLS, grpc-go's peer AuthInfo).

const (
	// sniffTimeout bounds the TLS handshake and the first bytes, as the
	// HTTP server's ReadHeaderTimeout bounds a request's header.
	sniffTimeout = 10 * time.Second
	// sniffIdleTimeout bounds how long an HTTP/2 connection may stay open
	// before its first request, as the HTTP server's IdleTimeout.
	sniffIdleTimeout = 2 * time.Minute
	// sniffMaxBytes bounds what is read before the first request's header
	// is complete and our SETTINGS acknowledged.
	sniffMaxBytes = 256 << 10
)

// route says which server a connection goes to.
type route int

const (
	routeHTTP1 route = iota // net/http
	routeHTTP2              // x/net/http2 in front of the same handler
	routeGRPC               // grpc-go
)

// router accepts on the API listener and hands each connection, once its
// protocol is known, to its server. It owns the goroutines that tell them
// apart; close ends them.
type router struct {
	ln      net.Listener
	tls     *tls.Config // nil = plaintext
	logf    func(format string, args ...any)
	deliver func(route, net.Conn)

	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{} // being told apart
}

func newRouter(ln net.Listener, tlsConfig *tls.Config, logf func(string, ...any), deliver func(route, net.Conn)) *router {
	return &router{ln: ln, tls: tlsConfig, logf: logf, deliver: deliver, conns: map[net.Conn]struct{}{}}
}

// run accepts until the listener is closed; another error is returned.
func (r *router) run() error {
	var delay time.Duration
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // e.g. out of file descriptors: back off, as net/http does
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !r.track(c) {
			c.Close()
			return nil
		}
		r.wg.Go(func() { r.serve(c) })
	}
}

// track registers c as being told apart; false once closed.
func (r *router) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *router) untrack(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
}

// close stops accepting, closes the connections not yet told apart and
// waits for the goroutines; the servers close theirs.
func (r *router) close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.ln.Close()
	r.wg.Wait()
}

// serve tells c apart and delivers it, or closes it.
func (r *router) serve(raw net.Conn) {
	defer r.untrack(raw)
	raw.SetDeadline(time.Now().Add(sniffTimeout))
	c, h2, err := r.open(raw)
	if err != nil {
		raw.Close()
		return
	}
	to := routeHTTP1
	if h2 {
		if to, c, err = sniffHTTP2(c); err != nil {
			c.Close()
			return
		}
	}
	raw.SetDeadline(time.Time{})
	r.deliver(to, c)
}

// open returns the connection to read HTTP from (decrypted under TLS)
// and whether it speaks HTTP/2: h2c's preface in plaintext, ALPN h2 under
// TLS.
func (r *router) open(raw net.Conn) (net.Conn, bool, error) {
	if r.tls == nil {
		return peekPreface(raw)
	}
	tc := tls.Server(&h2cRefuser{Conn: raw}, r.tls)
	if err := tc.Handshake(); err != nil {
		// As net/http's ServeTLS: a plaintext HTTP/1 client gets a 400
		// saying why, and the failure is logged (handshakeLog).
		reason := err.Error()
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			reason = "client sent an HTTP request to an HTTPS server"
		}
		r.logf("http: TLS handshake error from %s: %v", raw.RemoteAddr(), reason)
		return nil, false, err
	}
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		return tc, false, nil // net/http reads Request.TLS from the *tls.Conn itself
	}
	return tc, true, nil
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// peekPreface reads a plaintext connection's first bytes as long as they
// may be h2c's preface, and returns the connection with them put back.
func peekPreface(c net.Conn) (net.Conn, bool, error) {
	buf := make([]byte, 0, len(h2cPreface))
	for len(buf) < len(h2cPreface) {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if !bytes.HasPrefix([]byte(h2cPreface), buf) {
			return &replayConn{Conn: c, buf: buf}, false, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
	return &replayConn{Conn: c, buf: buf}, true, nil
}

// sniffHTTP2 reads an HTTP/2 connection up to its first request's header
// and decides by its content-type. Some clients (grpc-go) send no request
// before they have the server's SETTINGS, so it sends an empty SETTINGS
// frame first (cmux's HTTP2MatchHeaderFieldSendSettings; earlySettings), and reads on
// until the client acknowledged it: that acknowledgement is taken out of
// what the chosen server reads, which never sent that frame. Everything
// else read is replayed to it.
func sniffHTTP2(c net.Conn) (route, net.Conn, error) {
	var rc *replayConn
	switch c := c.(type) {
	case *replayConn: // plaintext: the preface was peeked
		rc = c
	case *tls.Conn:
		rc = &replayConn{Conn: c}
		if _, err := io.ReadFull(c, make([]byte, len(h2cPreface))); err != nil {
			return 0, c, err
		}
		rc.buf = []byte(h2cPreface)
	}
	if _, err := c.Write(earlySettings); err != nil {
		return 0, c, err
	}
	c.SetReadDeadline(time.Now().Add(sniffIdleTimeout))
	read := bytes.NewBuffer(rc.buf)
	rc.buf = nil
	fr := http2.NewFramer(io.Discard, io.TeeReader(io.LimitReader(rc.Conn, sniffMaxBytes), read))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 64 << 10
	var (
		contentType string
		headers     bool
		acked       bool
	)
	for !headers || !acked {
		at := read.Len()
		f, err := fr.ReadFrame()
		if err != nil {
			return 0, c, fmt.Errorf("server: HTTP/2 before its first request: %w", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() && !acked {
				acked = true
				read.Truncate(at) // ours: the server never sent it
			}
		case *http2.MetaHeadersFrame:
			if !headers {
				headers = true
				for _, hf := range f.RegularFields() {
					if hf.Name == "content-type" {
						contentType = hf.Value
					}
				}
			}
		}
	}
	rc.buf = read.Bytes()
	var out net.Conn = rc
	if tc, ok := rc.Conn.(*tls.Conn); ok {
		out = &tlsReplayConn{replayConn: rc, state: tc.ConnectionState()}
	}
	if contentType == "application/grpc" || contentType == "application/grpc+proto" {
		return routeGRPC, out, nil
	}
	return routeHTTP2, out, nil
}

// earlySettings is the SETTINGS frame the router sends before it knows
// the server. It holds only SETTINGS_NO_RFC7540_PRIORITIES = 1 (RFC 9218),
// the one setting whose value must not change after the first SETTINGS
// frame: x/net/http2 sends 1, and Chromium ends a connection whose second
// SETTINGS changes it ("SETTINGS_DEPRECATE_HTTP2_PRIORITIES value changed
// after first SETTINGS frame"); grpc-go never sends it, which leaves it 1.
var earlySettings = []byte{0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x9, 0, 0, 0, 1}

// replayConn reads buf before the connection.
type replayConn struct {
	net.Conn
	buf []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// tlsReplayConn is a replayConn over TLS: ConnectionState gives its state
// to x/net/http2 (Request.TLS) and to grpc-go (rpc's handshakenCreds).
type tlsReplayConn struct {
	*replayConn
	state tls.ConnectionState
}

func (c *tlsReplayConn) ConnectionState() tls.ConnectionState { return c.state }

// connQueue is a net.Listener whose connections the router delivers.
type connQueue struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// deliver hands c to Accept, or closes it once the queue is closed.
func (q *connQueue) deliver(c net.Conn) {
	select {
	case q.conns <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.closed.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// h2Conns serves the HTTP/2 connections routed to net/http's handler with
// x/net/http2, whose graceful shutdown follows the HTTP server's
// (http2.ConfigureServer); it owns their goroutines.
type h2Conns struct {
	srv  *http2.Server
	opts *http2.ServeConnOpts

	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

func (h *h2Conns) serve(c net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		c.Close()
		return
	}
	h.conns[c] = struct{}{}
	h.wg.Go(func() {
		h.srv.ServeConn(c, h.opts)
		c.Close()
		h.mu.Lock()
		delete(h.conns, c)
		h.mu.Unlock()
	})
}

// stop waits for the connections to end (the HTTP server's Shutdown sent
// them GOAWAY) until ctx ends, then closes those left.
func (h *h2Conns) stop(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	h.mu.Lock()
	for c := range h.conns {
		c.Close()
	}
	h.mu.Unlock()
	<-done
}
