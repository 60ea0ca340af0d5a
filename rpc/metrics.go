package rpc

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvd-project/kvd/node"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// rpcMetrics are the kvd_rpc_* families. A unary RPC is one request of its
// procedure, with the label call empty. The calls a KV/Stream carries are
// requests of procedure /kvd.v1.KV/Stream labelled with their kind (call =
// put, get, delete, txn; none for a call that set nothing), each with its
// own code and the latency of its message (received to answered); the
// stream itself counts once when it ends, call empty, without a latency
// (it lives as long as its client). So `sum by (procedure, call)` tells
// unary puts from stream puts, and failed reads show as get calls and Get
// requests with a code other than ok.
type rpcMetrics struct {
	requests *prometheus.CounterVec   // procedure, call, code
	duration *prometheus.HistogramVec // procedure, call
}

// newRPCMetrics registers the families on reg; nil = none (kept, not exported).
func newRPCMetrics(reg prometheus.Registerer) *rpcMetrics {
	m := &rpcMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvd_rpc_requests_total",
			Help: "RPCs by procedure and Connect code; the calls a KV/Stream carries by kind (call), the stream itself once it ends (call empty).",
		}, []string{"procedure", "call", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvd_rpc_duration_seconds",
			Help:    "RPC latency by procedure; for the calls a KV/Stream carries, by kind (call), from their message's arrival to its answer.",
			Buckets: node.LatencyBuckets(),
		}, []string{"procedure", "call"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

// codeLabel is an RPC's outcome as a label: ok or the Connect code.
func codeLabel(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

// observeStream counts the calls of one answered StreamRequest; kinds[i]
// is the kind of the call answered by results[i], took the message's time.
func (m *rpcMetrics) observeStream(kinds []string, results []*kvdv1.StreamResult, took time.Duration) {
	const proc = kvdv1connect.KVStreamProcedure
	latency := map[string]prometheus.Observer{}
	for i, r := range results {
		code := "ok"
		if e := r.GetError(); e != nil {
			code = connect.Code(e.Code).String()
		}
		m.requests.WithLabelValues(proc, kinds[i], code).Inc()
		o, ok := latency[kinds[i]]
		if !ok {
			o = m.duration.WithLabelValues(proc, kinds[i])
			latency[kinds[i]] = o
		}
		o.Observe(took.Seconds())
	}
}

func (m *rpcMetrics) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		resp, err := next(ctx, req)
		proc := req.Spec().Procedure
		m.duration.WithLabelValues(proc, "").Observe(time.Since(start).Seconds())
		m.requests.WithLabelValues(proc, "", codeLabel(err)).Inc()
		return resp, err
	}
}

func (m *rpcMetrics) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler counts a stream once, when it ends; the calls it
// carried are counted by the handler as it answers them (observeStream).
func (m *rpcMetrics) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		m.requests.WithLabelValues(conn.Spec().Procedure, "", codeLabel(err)).Inc()
		return err
	}
}
