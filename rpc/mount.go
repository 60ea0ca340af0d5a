package rpc

import (
	"context"
	"errors"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// Node is what the API needs from a node.
type Node interface {
	Store
	ClusterView
	Ready() bool
}

// Options configure the API.
type Options struct {
	Limits     Limits
	Version    string
	JoinSecret string // guards membership changes; empty = none
	// ClientCertAuth: a client certificate verified against the cluster CA
	// also passes the guard (the server requires one on every connection).
	ClientCertAuth bool
	Registry       prometheus.Registerer // nil = no RPC metrics
	// Stopping ends when the server begins to shut down: long-lived
	// streams (KV/Stream, KV/Watch, Cluster/WatchMembers) are then ended,
	// since a graceful HTTP shutdown would wait for them until its
	// deadline. nil = they end with their clients only.
	Stopping context.Context
}

// API is the running node's handlers with their guard and metrics: one
// set behind both protocols. Mount serves it with connect-go (Connect,
// gRPC-Web, HTTP/JSON, and gRPC on connections net/http holds); GRPC
// serves it with grpc-go. Their interceptors ask the same guard, count
// into the same kvd_rpc_* families and end long-lived streams on the same
// Options.Stopping.
type API struct {
	opts    Options
	kv      *kvServer
	cluster *clusterServer
	backup  *backupServer // nil: the node cannot export
	health  *healthChecker
	metrics *rpcMetrics
	guard   *guard
}

// NewAPI builds the handlers and registers the RPC metrics on
// opts.Registry (so call it once per registry).
func NewAPI(n Node, opts Options) *API {
	metrics := newRPCMetrics(opts.Registry)
	a := &API{
		opts:    opts,
		kv:      &kvServer{store: n, limits: opts.Limits, metrics: metrics},
		cluster: &clusterServer{view: n, version: opts.Version},
		health:  &healthChecker{n: n},
		metrics: metrics,
		guard:   newGuard(opts.JoinSecret, opts.ClientCertAuth),
	}
	if e, ok := n.(Exporter); ok {
		a.backup = &backupServer{n: e}
	}
	return a
}

// Mount registers the Connect services, gRPC health and reflection on mux
// and returns the API, for GRPC.Serve.
func Mount(mux *http.ServeMux, n Node, opts Options) *API {
	a := NewAPI(n, opts)
	a.mount(mux)
	return a
}

func (a *API) mount(mux *http.ServeMux) {
	handlerOpts := []connect.HandlerOption{
		connect.WithReadMaxBytes(a.opts.Limits.maxMessageBytes()),
		// Don't gzip small responses: setting up gzip for a 5-byte Put
		// response was the leader's largest CPU item (bench/README.md).
		connect.WithCompressMinBytes(1024),
		connect.WithInterceptors(a.metrics, a.guard),
	}
	kvPath, kv := kvdv1connect.NewKVHandler(a.kv, handlerOpts...)
	mux.Handle(kvPath, longStreams(kv, a.opts.Stopping))
	clusterPath, cluster := kvdv1connect.NewClusterHandler(a.cluster, handlerOpts...)
	mux.Handle(clusterPath, withClientCert(longStreams(cluster, a.opts.Stopping)))
	if a.backup != nil {
		mountExporter(mux, a.backup, handlerOpts)
	}
	mux.Handle(grpchealth.NewHandler(a.health))
	reflector := grpcreflect.NewStaticReflector(kvdv1connect.KVName, kvdv1connect.ClusterName, kvdv1connect.MaintenanceName, grpchealth.HealthV1ServiceName)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
}

// longStream lists the procedures whose calls live as long as their
// clients.
var longStream = map[string]bool{
	kvdv1connect.KVStreamProcedure:            true,
	kvdv1connect.KVWatchProcedure:             true,
	kvdv1connect.ClusterWatchMembersProcedure: true,
}

// longStreams lifts the server's read and write timeouts from long-lived
// streams (the per-request timeouts that protect unary calls would cut
// them after a minute) and ends them when stopping ends.
func longStreams(h http.Handler, stopping context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !longStream[r.URL.Path] {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		if stopping != nil {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			defer context.AfterFunc(stopping, cancel)()
			r = r.WithContext(ctx)
		}
		h.ServeHTTP(w, r)
	})
}

// healthChecker serves when the node has caught up; the process-level
// service ("") is always serving while it answers.
type healthChecker struct{ n Node }

func (h *healthChecker) Check(_ context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	switch req.Service {
	case "":
		return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
	case kvdv1connect.KVName, kvdv1connect.ClusterName:
		if h.n.Ready() {
			return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
		}
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return nil, connect.NewError(connect.CodeNotFound, errors.New("unknown service "+req.Service))
}
