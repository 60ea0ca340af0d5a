package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/node"
	"github.com/kvd-project/kvd/rpc"
	"github.com/kvd-project/kvd/ui"
)

// The API port serves in two stages on one listener: while the node
// starts (opens its data, forms, joins), startingHandler answers /healthz,
// the formation agreement's Identify and 503 to everything else; once the
// node runs, apiHandler serves the whole API. s.handler holds the stage.

func ptr(h http.Handler) *http.Handler { return &h }

// startingHandler serves while the node starts.
func startingHandler(formation *membership.Formation) http.Handler {
	mux := http.NewServeMux()
	rpc.MountBootstrap(mux, formation)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// HTTP 503 is Unavailable to Connect, gRPC and gRPC-Web clients.
		w.Header().Set("Retry-After", "1")
		if r.URL.Path == "/healthz" {
			fmt.Fprintln(w, "ok")
			return
		}
		http.Error(w, "starting: joining the cluster or opening the data dir", http.StatusServiceUnavailable)
	})
	return mux
}

// apiHandler serves the running node: Connect/gRPC/gRPC-Web, health,
// metrics, the cluster page (/ui/) and, when enabled, Go's profiles. The
// API's handlers are also grpc-go's from now on.
func (s *Server) apiHandler(n *node.Node, formation *membership.Formation) http.Handler {
	mux := http.NewServeMux()
	rpc.MountBootstrap(mux, formation)
	api := rpc.Mount(mux, n, rpc.Options{
		Limits: s.cfg.Limits, Version: s.cfg.Version, JoinSecret: s.cfg.JoinSecret,
		ClientCertAuth: s.cfg.ClientCertAuth, Registry: s.reg, Stopping: s.stopping,
	})
	s.grpc.Run(api)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("/ui/", ui.Handler())
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound)) // a browser opening the node
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// serve starts serving s.ln (TLS only, or plaintext) in front of whichever
// stage s.handler holds: the router (sniff.go) tells each connection's
// protocol apart and hands it to net/http (HTTP/1.1), x/net/http2 (other
// HTTP/2) or grpc-go (gRPC).
func (s *Server) serve(formation *membership.Formation) {
	var root http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*s.handler.Load()).ServeHTTP(w, r) })
	if s.cfg.ClientCertAuth {
		root = rpc.RequireClientCert(root)
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true) // HTTP/2 reaches h2Conns
	s.http = &http.Server{
		Handler:           root,
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(&handshakeLog{log: s.log, now: time.Now}, "", 0),
	}
	h2 := new(http2.Server)
	// Its graceful shutdown (GOAWAY) follows s.http.Shutdown.
	if err := http2.ConfigureServer(s.http, h2); err != nil {
		panic(err) // only for a TLSConfig with bad cipher suites; there is none
	}
	s.h2 = &h2Conns{srv: h2, opts: &http2.ServeConnOpts{BaseConfig: s.http, Handler: root}, conns: map[net.Conn]struct{}{}}
	s.grpc = rpc.NewGRPC(formation, s.cfg.Limits, s.cfg.ClientCertAuth)
	httpConns, grpcConns := newConnQueue(s.ln.Addr()), newConnQueue(s.ln.Addr())
	var tlsConfig *tls.Config
	if s.tls != nil {
		tlsConfig = s.tls.server
		if s.cfg.ReloadOnSIGHUP {
			s.watchSIGHUP()
		}
	}
	s.router = newRouter(s.ln, tlsConfig, s.http.ErrorLog.Printf, func(to route, c net.Conn) {
		switch to {
		case routeGRPC:
			grpcConns.deliver(c)
		case routeHTTP2:
			s.h2.serve(c)
		default:
			httpConns.deliver(c)
		}
	})
	s.errc = make(chan error, 4) // buffered: each goroutine sends at most once
	s.wg.Go(func() {
		if err := s.http.Serve(httpConns); !errors.Is(err, http.ErrServerClosed) {
			s.errc <- err
		}
	})
	s.wg.Go(func() {
		if err := s.grpc.Serve(grpcConns); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.errc <- err
		}
	})
	s.wg.Go(func() {
		if err := s.router.run(); err != nil {
			s.errc <- fmt.Errorf("server: accept on %s: %w", s.ln.Addr(), err)
		}
	})
}

// shutdown stops serving: no new connections, long-lived streams ended
// (stopStreams, before), in-flight calls on every server waited for until
// ctx ends, then cut.
func (s *Server) shutdown(ctx context.Context) {
	s.router.close()
	grpcDone := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(grpcDone)
	}()
	if err := s.http.Shutdown(ctx); err != nil {
		s.http.Close()
	}
	s.h2.stop(ctx)
	select {
	case <-grpcDone:
	case <-ctx.Done():
		s.grpc.Stop()
		<-grpcDone
	}
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	st := s.node.Status()
	if !st.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		if st.CatchUpTarget > st.Applied {
			fmt.Fprintf(w, "not ready: %s, applied %d of %d (%d behind), leader %d\n",
				st.State, st.Applied, st.CatchUpTarget, st.CatchUpTarget-st.Applied, st.LeaderID)
			return
		}
		fmt.Fprintf(w, "not ready: %s, applied index %d, leader %d: %s\n", st.State, st.Applied, st.LeaderID, st.Reason)
		return
	}
	fmt.Fprintf(w, "ready: %s, applied index %d, leader %d\n", st.Role, st.Applied, st.LeaderID)
}
