package client

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// Client talks to a kvd cluster. It is safe for concurrent use; create one
// per process and share it.
type Client struct {
	cfg        Config
	eps        []*endpoint
	httpClient *http.Client
	// transport is ours to close; nil when the caller gave Config.HTTPClient.
	transport *http.Transport
	opts      []connect.ClientOption
	cur       atomic.Uint32 // index into eps of the endpoint calls go to
	closed    atomic.Bool
	// leaderKnown: with PreferLeader, cur was pointed at the leader (or
	// the attempt to find it is done) since the last failover.
	leaderKnown atomic.Bool
	// leader: unless AnyNodeWrites, the index into eps of the leader that
	// writes go to, -1 while unknown; leaderAsked: when it was last looked
	// up (unix nanoseconds), so that one write looks at a time, at most
	// once a leaderCheck.
	leader      atomic.Int32
	leaderAsked atomic.Int64
	// lookups: the Status calls of leader lookups still in flight (a
	// lookup returns at the first leader found and cancels the rest);
	// Close waits for them, else a connection they return to the pool
	// after Close would stay open.
	lookups sync.WaitGroup
}

// leaderCheck: how long a leader found for writes is trusted before a
// write looks again (a leader that moved without failing still takes
// writes, forwarding them), and how often a write may look while none is
// known.
const leaderCheck = 5 * time.Second

// endpoint is one kvd node's API address with its generated clients.
type endpoint struct {
	name    string // as given in Config.Endpoints
	url     string // normalized base URL
	kv      kvdv1connect.KVClient
	cluster kvdv1connect.ClusterClient

	mu     sync.Mutex
	stream *stream // unless Config.Unary: the live stream, opened on first use
}

// liveStream returns the endpoint's stream, opening a new one if there is
// none or the last one broke.
func (ep *endpoint) liveStream() *stream {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.stream == nil || ep.stream.isBroken() {
		ep.stream = openStream(ep.kv)
	}
	return ep.stream
}

// closeStream ends the endpoint's stream, if any.
func (ep *endpoint) closeStream() {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.stream != nil {
		ep.stream.close()
		ep.stream = nil
	}
}

// New validates cfg, fills in defaults and returns a Client. It does not
// connect: the first call does.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Client{cfg: cfg, opts: protocolOptions(cfg.Protocol)}
	c.leader.Store(-1)
	if cfg.JoinSecret != "" {
		c.opts = append(c.opts, connect.WithInterceptors(joinSecret(cfg.JoinSecret)))
	}
	if cfg.HTTPClient != nil {
		c.httpClient = cfg.HTTPClient
	} else {
		c.transport = newTransport(cfg)
		c.httpClient = &http.Client{Transport: c.transport}
	}
	for _, name := range cfg.Endpoints {
		u, _ := normalizeEndpoint(name, cfg.defaultScheme()) // checked by Validate
		c.eps = append(c.eps, c.newEndpoint(name, u))
	}
	return c, nil
}

// Close releases idle connections. Calls after Close fail with ErrClosed.
// It is idempotent and always returns nil.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	for _, ep := range c.eps {
		ep.closeStream()
	}
	c.lookups.Wait()
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
	return nil
}

// Endpoints returns the configured endpoints, as given.
func (c *Client) Endpoints() []string {
	return append([]string(nil), c.cfg.Endpoints...)
}

// CurrentEndpoint returns the endpoint the next call goes to first.
func (c *Client) CurrentEndpoint() string {
	_, ep := c.current()
	return ep.name
}

// RawClients are the generated Connect clients for one endpoint, sharing the
// Client's transport, protocol and JoinSecret. Calls through them are not
// retried and return *connect.Error, not *Error.
type RawClients struct {
	KV          kvdv1connect.KVClient
	Cluster     kvdv1connect.ClusterClient
	Maintenance kvdv1connect.MaintenanceClient
}

// Raw returns the generated clients for endpoint ("host:port" or a URL); it
// need not be one of Config.Endpoints. Use it to ask one particular node,
// e.g. for its Status, or for fields the plain API does not expose.
func (c *Client) Raw(endpoint string) (RawClients, error) {
	u, err := normalizeEndpoint(endpoint, c.cfg.defaultScheme())
	if err != nil {
		return RawClients{}, err
	}
	ep := c.newEndpoint(endpoint, u)
	return RawClients{KV: ep.kv, Cluster: ep.cluster, Maintenance: kvdv1connect.NewMaintenanceClient(c.httpClient, u, c.opts...)}, nil
}

func (c *Client) newEndpoint(name, url string) *endpoint {
	return &endpoint{
		name:    name,
		url:     url,
		kv:      kvdv1connect.NewKVClient(c.httpClient, url, c.opts...),
		cluster: kvdv1connect.NewClusterClient(c.httpClient, url, c.opts...),
	}
}

// current returns the endpoint calls go to, with its index for advance.
func (c *Client) current() (uint32, *endpoint) {
	i := c.cur.Load()
	return i, c.eps[int(i)%len(c.eps)]
}

// advance moves to the endpoint after from, unless another call already
// moved away from it: N concurrent calls failing on one dead node move the
// client one step, not N.
func (c *Client) advance(from uint32) {
	if c.cur.CompareAndSwap(from, uint32((int(from)+1)%len(c.eps))) {
		c.leaderKnown.Store(false)
	}
}

// findLeader, with PreferLeader, points the client at the endpoint that is
// the leader. One caller looks at a time; the others go on with the
// current endpoint. Failures are ignored: calls fail over as usual.
func (c *Client) findLeader(ctx context.Context) {
	if !c.cfg.PreferLeader || len(c.eps) == 1 || c.leaderKnown.Swap(true) {
		return
	}
	idx, _ := c.current()
	if i := c.askLeader(ctx); i >= 0 {
		c.cur.CompareAndSwap(idx, uint32(i))
	}
}

// writeLeader returns the index of the endpoint a write goes to first: the
// leader, so that the write skips a follower's forwarding hop through
// Raft; -1 (the current endpoint) with AnyNodeWrites, one endpoint, or no
// leader known. The leader is looked up by the first write, again after it
// failed, and every leaderCheck; one write looks at a time, the others use
// what is known.
func (c *Client) writeLeader(ctx context.Context) int {
	if c.cfg.AnyNodeWrites || c.cfg.PreferLeader || len(c.eps) == 1 {
		return -1
	}
	last := c.leaderAsked.Load()
	if time.Since(time.Unix(0, last)) < leaderCheck || !c.leaderAsked.CompareAndSwap(last, time.Now().UnixNano()) {
		return int(c.leader.Load())
	}
	i := c.askLeader(ctx)
	c.leader.Store(int32(i))
	return i
}

// forgetLeader drops the write leader after a write to it failed; the next
// write may look it up at once.
func (c *Client) forgetLeader(i int) {
	if c.leader.CompareAndSwap(int32(i), -1) {
		c.leaderAsked.Store(0)
	}
}

// askLeader asks every endpoint for its Status at once (a local answer on
// each node) and returns the index of the one that is the leader, -1 when
// none says so within half a second.
func (c *Client) askLeader(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, min(c.cfg.RequestTimeout, 500*time.Millisecond))
	defer cancel()
	found := make(chan int, len(c.eps))
	for i, ep := range c.eps {
		c.lookups.Add(1)
		go func() {
			defer c.lookups.Done()
			st, err := ep.cluster.Status(ctx, connect.NewRequest(&kvdv1.StatusRequest{}))
			if err == nil && st.Msg.GetId() != 0 && st.Msg.GetId() == st.Msg.GetLeaderId() {
				found <- i
				return
			}
			found <- -1
		}()
	}
	for range c.eps {
		if i := <-found; i >= 0 {
			return i
		}
	}
	return -1
}

// joinSecretHeader carries the cluster's join secret (rpc.SecretHeader on
// the server).
const joinSecretHeader = "Kvd-Join-Secret"

// joinSecret sets the join secret header on every outgoing call, unary
// or streaming (Maintenance/Backup needs it).
type joinSecret string

func (s joinSecret) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set(joinSecretHeader, string(s))
		return next(ctx, req)
	}
}

func (s joinSecret) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set(joinSecretHeader, string(s))
		return conn
	}
}

func (s joinSecret) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func protocolOptions(p Protocol) []connect.ClientOption {
	switch p {
	case ProtocolGRPC:
		return []connect.ClientOption{connect.WithGRPC()}
	case ProtocolGRPCWeb:
		return []connect.ClientOption{connect.WithGRPCWeb()}
	}
	return nil
}

// newTransport returns the transport for cfg. The stream (the default for
// Put, Get, Delete and Txn) and gRPC need HTTP/2: cleartext with prior
// knowledge (h2c) for http:// endpoints, TLS with ALPN for https://; Go's
// net/http does both since 1.24, so golang.org/x/net/http2 is not needed.
// HTTP/2 pings detect a dead node that holds the single multiplexed
// connection. Every other call of such a client shares that connection.
//
// Unary Connect and gRPC-Web calls (Config.Unary, ProtocolGRPCWeb) use
// HTTP/1.1 with a large keep-alive pool, so many concurrent calls to one
// node reuse connections, over TLS too (ALPN then offers only http/1.1):
// each pooled connection pays one handshake when it is opened and none
// after, and each carries its own encryption on its own server goroutine,
// so many concurrent calls spread their crypto over the server's cores.
//
// No proxy is used: a database client should not follow HTTP_PROXY.
func newTransport(cfg Config) *http.Transport {
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.DialTimeout,
		ExpectContinueTimeout: time.Second,
		Protocols:             new(http.Protocols),
	}
	if cfg.TLS != nil {
		// Cloned: the transport sets NextProtos (ALPN) on its copy.
		t.TLSClientConfig = cfg.TLS.Clone()
	}
	if cfg.Protocol == ProtocolGRPC || cfg.streams() {
		t.Protocols.SetHTTP2(true)
		t.Protocols.SetUnencryptedHTTP2(cfg.TLS == nil)
		t.HTTP2 = &http.HTTP2Config{SendPingTimeout: 10 * time.Second, PingTimeout: 5 * time.Second}
	} else {
		t.Protocols.SetHTTP1(true)
	}
	return t
}
