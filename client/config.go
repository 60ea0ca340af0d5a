package client

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Protocol is the wire protocol the client speaks. kvd serves all three on
// the same port.
type Protocol string

const (
	// ProtocolConnect is the Connect protocol (the default): over HTTP/2
	// (cleartext h2c for http:// endpoints), or with Config.Unary over a
	// pool of keep-alive HTTP/1.1 connections, which spreads unary calls
	// well across a server's cores.
	ProtocolConnect Protocol = "connect"
	// ProtocolGRPC is gRPC over HTTP/2; for http:// endpoints, cleartext
	// HTTP/2 with prior knowledge (h2c).
	ProtocolGRPC Protocol = "grpc"
	// ProtocolGRPCWeb is gRPC-Web over HTTP/1.1. It cannot stream both
	// ways, so its calls are always unary (as with Config.Unary).
	ProtocolGRPCWeb Protocol = "grpcweb"
)

// Defaults used by DefaultConfig and for zero fields of a Config passed to New.
const (
	DefaultRequestTimeout = 5 * time.Second
	DefaultDialTimeout    = 2 * time.Second
	// DefaultMaxAttempts with the default backoff rides out about 2–4 s of
	// unavailability, the length of one leader election, before giving up.
	DefaultMaxAttempts = 8
	DefaultBackoffBase = 50 * time.Millisecond
	DefaultBackoffMax  = time.Second
	// maxIdleConnsPerHost is large because the Connect protocol over HTTP/1.1
	// needs one connection per concurrent call: an application with 500
	// goroutines calling one node must not re-dial on every call.
	maxIdleConnsPerHost = 1024
)

// Config configures a Client. The zero value of every field except Endpoints
// means "use the default"; negative durations and counts are errors.
type Config struct {
	// Endpoints are the API addresses of kvd nodes, as "host:port" or
	// "http://host:port" / "https://host:port". A bare host:port means
	// http, or https when TLS is set. All endpoints use the same scheme: a
	// cluster serves TLS on every node or on none. Any node accepts any
	// call; the client sticks to one and fails over to the next.
	Endpoints []string
	// TLS, if set, is the TLS configuration for the nodes (normally made by
	// TLSFromFiles: the cluster's CA, and a client certificate when the
	// cluster requires one), and host:port endpoints mean https. Nil means
	// plaintext for host:port and http:// endpoints; https:// endpoints
	// then verify the nodes against the system's roots. Not with
	// HTTPClient: configure that client's transport instead.
	TLS *tls.Config
	// Protocol is ProtocolConnect (default), ProtocolGRPC or ProtocolGRPCWeb.
	Protocol Protocol
	// RequestTimeout bounds each attempt of a call (not the whole call; use
	// the ctx for that). Default 5s.
	RequestTimeout time.Duration
	// DialTimeout bounds connecting to one endpoint, so that an unreachable
	// host fails over quickly. Ignored when HTTPClient is set. Default 2s.
	DialTimeout time.Duration
	// MaxAttempts bounds the attempts of one call, the first included.
	// Default 8; 1 disables retries and failover.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the wait before each retry: the n-th
	// retry waits a random duration in [d/2, d], d = min(BackoffMax,
	// BackoffBase·2ⁿ⁻¹). Defaults 50ms and 1s.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// HTTPClient, if set, is used instead of the client's own transport (for
	// proxies or tests; for TLS, set TLS instead). It must speak HTTP/2
	// unless every call is unary (Unary, or ProtocolGRPCWeb) and the
	// protocol is not ProtocolGRPC.
	// Close does not close its connections.
	HTTPClient *http.Client
	// JoinSecret is the cluster's join secret (kvd --join-secret), needed for
	// membership changes (Promote, Remove, TransferLeader, Snapshot) when the
	// cluster has one. It is sent in the Kvd-Join-Secret header of every
	// call, so use https:// endpoints on an untrusted network. The client
	// never logs it or puts it in an error message.
	JoinSecret string
	// Unary sends Put, Get, Delete and Txn as one HTTP request each, over a
	// pool of keep-alive HTTP/1.1 connections for ProtocolConnect. By
	// default they travel over one bidirectional stream per endpoint
	// (kvd.v1.KV/Stream, HTTP/2; cleartext h2c for http://): calls made at
	// the same time share messages and the server coalesces their writes
	// into shared Raft entries, so a process with many concurrent callers
	// gets far more throughput from the same CPU; opening the stream costs
	// the first call about 1 ms, so a program that makes one call and exits
	// may prefer Unary. Either way every call gets
	// its own result or error, with the same retry rules. ProtocolGRPCWeb
	// cannot stream both ways and is always unary. Range, Watch and the
	// Cluster and Maintenance calls are separate requests either way.
	Unary bool
	// PreferLeader: before its first call, and again after each failover,
	// the client asks for the leader and, if the leader's API address is
	// one of Endpoints, sends its calls there. Writes then skip a
	// follower's forwarding hop. Reads gain nothing from it.
	PreferLeader bool
	// AnyNodeWrites sends writes (Put, Delete, Txn and the membership
	// calls) to the current endpoint, like reads. By default a write goes
	// to the leader when the client knows it (looked up by the first
	// write, after a failure there and every 5 s; Status on every
	// endpoint, a local answer on each): it then skips a follower's
	// forwarding hop through Raft. Reads stay on the current endpoint.
	AnyNodeWrites bool
}

// DefaultConfig returns a Config for one local node with every default
// filled in.
func DefaultConfig() Config {
	return Config{Endpoints: []string{"127.0.0.1:7070"}}.withDefaults()
}

// withDefaults returns c with zero fields replaced by their defaults. It is
// the only place defaults are applied.
func (c Config) withDefaults() Config {
	if c.Protocol == "" {
		c.Protocol = ProtocolConnect
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = DefaultBackoffBase
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = max(DefaultBackoffMax, c.BackoffBase)
	}
	return c
}

// Validate reports the first invalid setting, naming the value. Zero fields
// are valid: they take their defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	if err := c.validateEndpoints(); err != nil {
		return err
	}
	if err := c.validateTransport(); err != nil {
		return err
	}
	if !validHeaderValue(c.JoinSecret) {
		// The value is not shown: it is a secret.
		return fmt.Errorf("client: Config.JoinSecret has a control character, a newline or " +
			"leading or trailing blanks, which an HTTP header cannot carry")
	}
	return c.validateDurations()
}

// validateEndpoints: at least one, none twice, one scheme for all, and
// http:// never with Config.TLS.
func (c Config) validateEndpoints() error {
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("client: Config.Endpoints is empty: give at least one kvd API address (host:port)")
	}
	seen := make(map[string]string, len(c.Endpoints))
	byScheme := map[string]string{} // scheme → the first endpoint with it
	for _, ep := range c.Endpoints {
		u, err := normalizeEndpoint(ep, c.defaultScheme())
		if err != nil {
			return err
		}
		if prev, ok := seen[u]; ok {
			return fmt.Errorf("client: Config.Endpoints lists %q twice (as %q and %q)", u, prev, ep)
		}
		seen[u] = ep
		scheme, _, _ := strings.Cut(u, "://")
		if _, ok := byScheme[scheme]; !ok {
			byScheme[scheme] = ep
		}
	}
	if len(byScheme) > 1 {
		return fmt.Errorf("client: Config.Endpoints mixes http (%q) and https (%q): the nodes of a cluster "+
			"all serve TLS or none does; use https:// for all (with Config.TLS) or http:// for all",
			byScheme["http"], byScheme["https"])
	}
	if ep, ok := byScheme["http"]; ok && c.TLS != nil {
		return fmt.Errorf("client: Config.TLS is set but endpoint %q is http://: use https:// or a bare host:port", ep)
	}
	return nil
}

// validateTransport: TLS or an HTTP client of one's own, and a known
// protocol.
func (c Config) validateTransport() error {
	if c.TLS != nil && c.HTTPClient != nil {
		return fmt.Errorf("client: Config.TLS and Config.HTTPClient are both set: put the TLS settings " +
			"in HTTPClient's transport, or drop HTTPClient")
	}
	switch c.Protocol {
	case ProtocolConnect, ProtocolGRPC, ProtocolGRPCWeb:
	default:
		return fmt.Errorf("client: Config.Protocol %q is not one of %q, %q, %q",
			c.Protocol, ProtocolConnect, ProtocolGRPC, ProtocolGRPCWeb)
	}
	return nil
}

// streams reports whether Put, Get, Delete and Txn go over the
// per-endpoint stream: unless Unary is set or the protocol cannot stream
// both ways (gRPC-Web).
func (c Config) streams() bool {
	return !c.Unary && c.Protocol != ProtocolGRPCWeb
}

// validateDurations: timeouts, attempts and backoff, after defaults.
func (c Config) validateDurations() error {
	switch {
	case c.RequestTimeout < 0:
		return fmt.Errorf("client: Config.RequestTimeout (%v) must be > 0", c.RequestTimeout)
	case c.DialTimeout < 0:
		return fmt.Errorf("client: Config.DialTimeout (%v) must be > 0", c.DialTimeout)
	case c.MaxAttempts < 0:
		return fmt.Errorf("client: Config.MaxAttempts (%d) must be >= 1", c.MaxAttempts)
	case c.BackoffBase < 0:
		return fmt.Errorf("client: Config.BackoffBase (%v) must be > 0", c.BackoffBase)
	case c.BackoffMax < c.BackoffBase:
		return fmt.Errorf("client: Config.BackoffMax (%v) must be >= BackoffBase (%v)", c.BackoffMax, c.BackoffBase)
	}
	return nil
}

// validHeaderValue reports whether s survives an HTTP header unchanged: no
// control characters, and no blanks at either end (servers trim them).
func validHeaderValue(s string) bool {
	if strings.TrimSpace(s) != s {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' || b == 0x7f {
			return false
		}
	}
	return true
}

// defaultScheme is the scheme of bare host:port endpoints.
func (c Config) defaultScheme() string {
	if c.TLS != nil {
		return "https"
	}
	return "http"
}

// normalizeEndpoint turns "host:port" (with scheme, "http" or "https") or
// "http(s)://host:port[/path]" into a base URL without a trailing slash.
func normalizeEndpoint(ep, scheme string) (string, error) {
	s := strings.TrimSpace(ep)
	if s == "" {
		return "", fmt.Errorf("client: endpoint %q is empty (want host:port)", ep)
	}
	if !strings.Contains(s, "://") {
		s = scheme + "://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("client: endpoint %q: %w (want host:port)", ep, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("client: endpoint %q: scheme %q is not http or https", ep, u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return "", fmt.Errorf("client: endpoint %q has no host or port (want host:port, e.g. 127.0.0.1:7070)", ep)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("client: endpoint %q: want host:port without user, query or fragment", ep)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}
