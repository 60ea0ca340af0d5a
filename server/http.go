package server

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

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
// metrics, the cluster page (/ui/) and, when enabled, Go's profiles.
func (s *Server) apiHandler(n *node.Node, formation *membership.Formation) http.Handler {
	mux := http.NewServeMux()
	rpc.MountBootstrap(mux, formation)
	rpc.Mount(mux, n, rpc.Options{
		Limits: s.cfg.Limits, Version: s.cfg.Version, JoinSecret: s.cfg.JoinSecret,
		ClientCertAuth: s.cfg.ClientCertAuth, Registry: s.reg,
	})
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

// serve starts the HTTP server on s.ln (TLS only, or h2c and HTTP/1.1),
// in front of whichever stage s.handler holds.
func (s *Server) serve() {
	var root http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*s.handler.Load()).ServeHTTP(w, r) })
	if s.cfg.ClientCertAuth {
		root = rpc.RequireClientCert(root)
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	if s.tls != nil {
		protocols.SetHTTP2(true) // by ALPN; plaintext is refused
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
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
	s.errc = make(chan error, 2)
	serve := s.http.Serve
	if s.tls != nil {
		s.http.TLSConfig = s.tls.server
		serve = func(ln net.Listener) error { return s.http.ServeTLS(tlsOnlyListener{ln}, "", "") }
		if s.cfg.ReloadOnSIGHUP {
			s.watchSIGHUP()
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
			s.errc <- err // buffered: each goroutine sends at most once
		}
	}()
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
