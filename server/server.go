package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kvd-project/kvd/node"
	"github.com/kvd-project/kvd/rpc"
)

// Config of a server. Node.APIAddr (the advertised API address) defaults to
// the address Listen is bound to.
type Config struct {
	Node    node.Config
	Listen  string // API listen address, e.g. 127.0.0.1:7070 or 127.0.0.1:0
	Limits  rpc.Limits
	Version string
	Logger  *slog.Logger
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
	http *http.Server
	node *node.Node

	serveErr chan error
	stopOnce sync.Once
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
	return &Server{cfg: cfg, log: cfg.Logger.With("component", "server")}, nil
}

// Start binds the API address, starts the node and serves. It returns once
// the API is accepting connections; the node becomes ready later (/readyz).
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w (is another kvd running? use --listen)", s.cfg.Listen, err)
	}
	s.ln = ln
	ncfg := s.cfg.Node
	if ncfg.APIAddr == "" {
		ncfg.APIAddr = ln.Addr().String()
	}
	if ncfg.Logger == nil {
		ncfg.Logger = s.cfg.Logger
	}
	s.reg = prometheus.NewRegistry()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ncfg.Registry = s.reg
	n, err := node.Start(ctx, ncfg)
	if err != nil {
		ln.Close()
		return err
	}
	s.node = n

	mux := http.NewServeMux()
	rpc.Mount(mux, n, rpc.Options{Limits: s.cfg.Limits, Version: s.cfg.Version, Registry: s.reg})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.http = &http.Server{
		Handler:           mux,
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.serveErr = make(chan error, 1)
	go func() { s.serveErr <- s.http.Serve(ln) }()
	s.log.Info("serving", "api", ln.Addr().String(), "raft", ncfg.RaftAddr, "replica", uint64(n.ID()), "data_dir", ncfg.DataDir)
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	st := s.node.Status()
	if !st.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %s, applied index %d, leader %d\n", st.State, st.Applied, st.LeaderID)
		return
	}
	fmt.Fprintf(w, "ready: %s, applied index %d, leader %d\n", st.Role, st.Applied, st.LeaderID)
}

// Addr is the bound API address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Node is the running node.
func (s *Server) Node() *node.Node { return s.node }

// Done yields the HTTP server's error if it stops serving on its own.
func (s *Server) Done() <-chan error { return s.serveErr }

// Stop stops serving (waiting for in-flight requests until ctx ends) and
// stops the node. Idempotent.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		if s.http != nil {
			if e := s.http.Shutdown(ctx); e != nil {
				err = e
				s.http.Close()
			}
		}
		if s.node != nil {
			s.node.Stop()
		}
		s.log.Info("stopped")
	})
	return err
}
