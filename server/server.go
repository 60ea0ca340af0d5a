package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/node"
	"github.com/kvd-project/kvd/rpc"
)

// Config of a server. Node.APIAddr (the advertised API address) defaults to
// the address Listen is bound to.
type Config struct {
	Node       node.Config
	Listen     string // API listen address, e.g. 127.0.0.1:7070 or 127.0.0.1:0
	Limits     rpc.Limits
	Version    string
	JoinSecret string // guards Join/Promote/Remove; sent when joining
	// ClientCertAuth (--client-cert-auth): the API requires a client
	// certificate signed by Node.TLS.CAFile, and such a certificate also
	// passes the membership guard. Without it a client certificate is
	// optional (verified when given). Node.TLS turns TLS on.
	ClientCertAuth bool
	// InsecureOpenMembership lets a node listening beyond loopback start
	// with neither JoinSecret nor ClientCertAuth (see CheckMembershipGuard).
	InsecureOpenMembership bool
	// ReloadOnSIGHUP: SIGHUP re-reads the API certificate (it is also
	// re-read when its files change).
	ReloadOnSIGHUP bool
	// LeaveOnExit: Stop transfers leadership if needed and removes this
	// node from the cluster before stopping.
	LeaveOnExit bool
	// Pprof serves Go's profiles under /debug/pprof/ on the API address.
	Pprof bool
	// Registry, when set, holds this node's entry (--discover consul:).
	Registry Registry
	Logger   *slog.Logger
}

// DefaultConfig is the embedded default single node.
func DefaultConfig() Config {
	return Config{
		Node:    node.DefaultConfig(),
		Listen:  "127.0.0.1:7070",
		Limits:  rpc.DefaultLimits(),
		Version: "dev",
	}
}

// Server is a running kvd: node plus API.
type Server struct {
	cfg  Config
	log  *slog.Logger
	reg  *prometheus.Registry
	ln   net.Listener
	node *node.Node
	// peers: the node's client for its peers' APIs; Stop closes its idle
	// connections (else they outlive the server until the peers hang up).
	peers membership.PeerDialer
	// The API port's servers (http.go): the router in front, net/http
	// for HTTP/1.1, h2Conns for HTTP/2, grpc-go for gRPC.
	router *router
	http   *http.Server
	h2     *h2Conns
	grpc   *rpc.GRPC
	// running is node once started, for goroutines that outlive Start's
	// beginning (the registry's).
	running      atomic.Pointer[node.Node]
	apiAddr      string
	stopRegistry func() // nil without a registry
	// stopping ends when Stop begins: long-lived streams end then
	// instead of holding the graceful shutdown until its deadline.
	stopping    context.Context
	stopStreams context.CancelFunc

	tls      *tlsSetup // nil = plaintext
	guard    string    // warning logged once at Start
	handler  atomic.Pointer[http.Handler]
	errc     chan error
	stopOnce sync.Once

	// Every goroutine the server starts (the router and the servers, the
	// watcher of the node's removal, the SIGHUP reloader) is in wg and
	// ends once stopc is closed (by halt) and the servers are shut down.
	wg       sync.WaitGroup
	stopc    chan struct{}
	haltOnce sync.Once
}

// New checks the configuration; Start does the work.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Limits == (rpc.Limits{}) {
		cfg.Limits = rpc.DefaultLimits()
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if cfg.Listen == "" {
		return nil, errors.New("server: listen address is empty")
	}
	log := cfg.Logger.With("component", "server")
	t, err := newTLS(cfg.Node.TLS, cfg.ClientCertAuth, log)
	if err != nil {
		return nil, err
	}
	raftListen := cfg.Node.RaftListen
	if raftListen == "" {
		raftListen = cfg.Node.RaftAddr
	}
	warning, err := CheckMembershipGuard([]string{cfg.Listen, raftListen}, cfg.JoinSecret != "", cfg.ClientCertAuth, cfg.InsecureOpenMembership)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, tls: t, guard: warning, stopc: make(chan struct{})}
	s.stopping, s.stopStreams = context.WithCancel(context.Background())
	return s, nil
}

// Start binds the API address and serves /healthz and /readyz at once;
// it then starts the node (a joining node first waits to be admitted, which
// may take long: ctx bounds it) and serves the API. It returns once the API
// is served; the node becomes ready later (/readyz).
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w (is another kvd running? use --listen)", s.cfg.Listen, err)
	}
	s.ln = ln
	if s.guard != "" {
		s.log.Warn(s.guard)
	}
	ncfg := s.nodeConfig()
	s.peers = ncfg.Peers
	s.handler.Store(ptr(startingHandler(ncfg.Formation)))
	s.serve(ncfg.Formation)
	s.apiAddr = ncfg.APIAddr
	s.startRegistry(ncfg.APIAddr, ncfg.RaftAddr, ncfg.Formation)

	n, err := node.Start(ctx, ncfg)
	if err != nil {
		s.leaveRegistry(false)
		cut, cancel := context.WithCancel(context.Background())
		cancel()
		s.shutdown(cut)
		s.halt()
		return err
	}
	s.node = n
	s.running.Store(n)
	s.watchRemoval(n)
	s.handler.Store(ptr(s.apiHandler(n, ncfg.Formation)))
	s.log.Info("serving", "api", ln.Addr().String(), "tls", s.tls != nil, "raft", ncfg.RaftAddr, "replica", uint64(n.ID()), "data_dir", ncfg.DataDir)
	return nil
}

// nodeConfig completes the node's configuration with what the server
// owns: the advertised address, the logger, the peer dialer (with the
// cluster CA under TLS), the metrics registry and the formation state the
// Identify handler publishes.
func (s *Server) nodeConfig() node.Config {
	ncfg := s.cfg.Node
	if ncfg.APIAddr == "" {
		ncfg.APIAddr = s.ln.Addr().String()
	}
	if ncfg.Logger == nil {
		ncfg.Logger = s.cfg.Logger
	}
	if ncfg.Peers == nil {
		var client *tls.Config
		if s.tls != nil {
			client = s.tls.client
		}
		ncfg.Peers = rpc.NewPeerDialer(s.cfg.JoinSecret, client)
	}
	s.reg = prometheus.NewRegistry()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ncfg.Registry = s.reg
	ncfg.Formation = new(membership.Formation)
	return ncfg
}

// watchRemoval ends the server (Done) when the replica is removed.
func (s *Server) watchRemoval(n *node.Node) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-n.Removed():
			s.errc <- fmt.Errorf("replica %d was removed from the cluster; restart with --rejoin to join again under a new ID", n.ID())
		case <-s.stopc:
		}
	}()
}

// Addr is the bound API address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Node is the running node.
func (s *Server) Node() *node.Node { return s.node }

// Done yields an error when the server must stop on its own: the HTTP
// server failed, or this replica was removed from the cluster.
func (s *Server) Done() <-chan error { return s.errc }

// Stop stops serving (waiting for in-flight requests until ctx ends) and
// stops the node. Idempotent.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		left := false
		if s.cfg.LeaveOnExit && s.node != nil {
			if e := s.node.Leave(ctx); e != nil {
				s.log.Error("leave the cluster", "err", e)
				err = e
			} else {
				left = true
			}
		}
		s.leaveRegistry(left || s.removed())
		s.stopStreams()
		if s.http != nil {
			s.shutdown(ctx)
		}
		if s.node != nil {
			s.node.Stop()
		}
		s.halt()
		s.log.Info("stopped")
	})
	return err
}

// removed reports whether this node's replica was removed from the cluster.
func (s *Server) removed() bool {
	if s.node == nil {
		return false
	}
	select {
	case <-s.node.Removed():
		return true
	default:
		return false
	}
}

// watchSIGHUP re-reads the API certificate on every SIGHUP until halt.
func (s *Server) watchSIGHUP() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer signal.Stop(sig)
		for {
			select {
			case <-sig:
				s.tls.certs.reload()
			case <-s.stopc:
				return
			}
		}
	}()
}

// halt ends the server's goroutines and waits for them, then closes the
// idle connections to peers; the servers (and the node) must be shut down
// first. Idempotent.
func (s *Server) halt() {
	s.haltOnce.Do(func() { close(s.stopc) })
	s.wg.Wait()
	if c, ok := s.peers.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
