package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/kvd-project/kvd/bench/load"
	"github.com/kvd-project/kvd/client"
)

// Transports: how calls reach a node.
const (
	transportHTTP1  = "http1"  // a keep-alive pool of HTTP/1.1 connections
	transportH2C    = "h2c"    // one cleartext HTTP/2 connection per endpoint
	transportStream = "stream" // one bidirectional stream per endpoint, over h2c

	// leaderSuffix marks the transport of runs with --prefer-leader.
	leaderSuffix = "+leader"
	// tlsSuffix marks the transport of runs over TLS (before leaderSuffix).
	tlsSuffix = "+tls"
	// anyNodeSuffix marks the transport of runs with --any-node-writes.
	anyNodeSuffix = "+anynode"
)

// dialOptions say how the generator talks to its endpoints.
type dialOptions struct {
	Endpoints   []string
	Protocol    string // client.Protocol
	Transport   string // transportHTTP1, transportH2C, or "" for the protocol's default
	Consistency string // of gets: linearizable or serializable
	Spread      bool
	Unary       bool // client.Config.Unary: puts and gets as requests of their own, not over the stream
	Leader      bool // client.Config.PreferLeader
	AnyNode     bool // client.Config.AnyNodeWrites
	Timeout     time.Duration
	TLS         *tls.Config // client.Config.TLS (--cacert, --cert, --key); nil = plaintext
}

// tls reports whether the calls go over TLS: with TLS settings, or to
// https:// endpoints (verified against the system's roots).
func (o dialOptions) tls() bool {
	return o.TLS != nil || strings.HasPrefix(o.Endpoints[0], "https://")
}

func (o dialOptions) validate() error {
	if len(o.Endpoints) == 0 {
		return errors.New("--endpoints is empty: give at least one kvd API address (host:port)")
	}
	switch client.Protocol(o.Protocol) {
	case client.ProtocolConnect, client.ProtocolGRPC, client.ProtocolGRPCWeb:
	case protocolGRPCGo:
		if (o.Transport != "" && o.Transport != transportH2C) || o.Leader || o.AnyNode {
			return errGRPCGoOnly
		}
	default:
		return fmt.Errorf("--protocol %q is not connect, grpc, grpcweb or grpc-go", o.Protocol)
	}
	switch o.Transport {
	case "", transportH2C:
	case transportHTTP1:
		if client.Protocol(o.Protocol) == client.ProtocolGRPC {
			return fmt.Errorf("--transport http1 cannot carry --protocol grpc (gRPC needs HTTP/2): use h2c")
		}
	default:
		return fmt.Errorf("--transport %q is not http1 or h2c", o.Transport)
	}
	if o.Transport != "" && o.streams() {
		return fmt.Errorf("--transport %s says how unary calls travel, but puts and gets go over the stream "+
			"(one HTTP/2 stream per node, the client's default): add --unary", o.Transport)
	}
	switch o.Consistency {
	case "linearizable", "serializable":
	default:
		return fmt.Errorf("--consistency %q is not linearizable or serializable", o.Consistency)
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout (%v) must be > 0", o.Timeout)
	}
	return nil
}

// streams reports whether puts and gets go over the client's stream: its
// default, unless --unary, gRPC-Web (which cannot stream both ways) or the
// grpc-go client.
func (o dialOptions) streams() bool {
	return !o.Unary && client.Protocol(o.Protocol) != client.ProtocolGRPCWeb && o.Protocol != protocolGRPCGo
}

// transport is the transport in use, defaults resolved.
func (o dialOptions) transport() string {
	if o.streams() {
		return transportStream
	}
	if o.Transport != "" {
		return o.Transport
	}
	if client.Protocol(o.Protocol) == client.ProtocolGRPC || o.Protocol == protocolGRPCGo {
		return transportH2C
	}
	return transportHTTP1
}

// newTargets builds the clients: one for all endpoints, or with Spread one
// per endpoint (each with the others after it, for failover). closeAll
// releases their connections.
func newTargets(o dialOptions) (targets []load.Target, closeAll func(), err error) {
	if o.Protocol == protocolGRPCGo {
		return newGRPCTargets(o)
	}
	var closers []func()
	closeAll = func() {
		for _, f := range closers {
			f()
		}
	}
	n := 1
	if o.Spread {
		n = len(o.Endpoints)
	}
	for i := range n {
		eps := append(append([]string(nil), o.Endpoints[i:]...), o.Endpoints[:i]...)
		cfg := client.Config{Endpoints: eps, Protocol: client.Protocol(o.Protocol), RequestTimeout: o.Timeout, Unary: o.Unary, PreferLeader: o.Leader, AnyNodeWrites: o.AnyNode}
		// The client's own transport for unary calls is HTTP/1.1 for
		// connect and grpcweb and h2c (h2 by ALPN over TLS) for grpc; the
		// other combination needs our own, which then carries the TLS
		// settings.
		if o.transport() == transportH2C && cfg.Protocol != client.ProtocolGRPC {
			t := h2cTransport(o.TLS)
			cfg.HTTPClient = &http.Client{Transport: t}
			closers = append(closers, t.CloseIdleConnections)
			if o.TLS != nil {
				cfg.Endpoints = httpsEndpoints(eps)
			}
		} else {
			cfg.TLS = o.TLS
		}
		c, err := client.New(cfg)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		closers = append(closers, func() { c.Close() })
		t := &kvTarget{c: c}
		if o.Consistency == "serializable" {
			t.read = []client.ReadOption{client.Serializable()}
		}
		targets = append(targets, t)
	}
	return targets, closeAll, nil
}

// h2cTransport speaks cleartext HTTP/2 with prior knowledge, or with
// tlsCfg HTTP/2 over TLS: all calls to one endpoint share one connection.
func h2cTransport(tlsCfg *tls.Config) *http.Transport {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: client.DefaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: client.DefaultDialTimeout,
		Protocols:           new(http.Protocols),
	}
	if tlsCfg != nil {
		t.TLSClientConfig = tlsCfg.Clone()
		t.Protocols.SetHTTP2(true)
	} else {
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	return t
}

// httpsEndpoints gives bare host:port endpoints the https scheme, which
// client.Config.TLS would imply but an own HTTPClient does not.
func httpsEndpoints(eps []string) []string {
	out := make([]string, len(eps))
	for i, ep := range eps {
		if !strings.Contains(ep, "://") {
			ep = "https://" + ep
		}
		out[i] = ep
	}
	return out
}

// preflight makes one read through every target, so that a wrong address
// fails at once with a clear message instead of as a run full of errors.
func preflight(ctx context.Context, targets []load.Target, endpoints []string) error {
	for _, t := range targets {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := t.Get(ctx, []byte("bench-preflight"))
		cancel()
		if err != nil {
			return fmt.Errorf("cannot read from kvd at %v: %w", endpoints, err)
		}
	}
	return nil
}

// kvTarget runs the workload through the Go client.
type kvTarget struct {
	c    *client.Client
	read []client.ReadOption // built once: the loop must not allocate options
	acks *load.Acks          // with watchers: every put's acknowledgement
}

func (t *kvTarget) Put(ctx context.Context, key, value []byte) error {
	sent := time.Now()
	r, err := t.c.Put(ctx, key, value)
	if err == nil && t.acks != nil {
		t.acks.Put(r.Revision, key, sent)
	}
	return err
}

func (t *kvTarget) Get(ctx context.Context, key []byte) (bool, error) {
	_, err := t.c.Get(ctx, key, t.read...)
	if errors.Is(err, client.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
