package rpc

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// codeLabel is an RPC's outcome as a label: ok or the Connect code. A
// grpc-go status carries the same code under the same number.
func codeLabel(err error) string {
	if err == nil {
		return "ok"
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code().String()
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.OK {
		return connect.Code(st.Code()).String()
	}
	return connect.CodeUnknown.String()
}

// observeUnary counts one finished unary call of procedure, begun at start.
func (m *rpcMetrics) observeUnary(procedure string, start time.Time, err error) {
	m.duration.WithLabelValues(procedure, "").Observe(time.Since(start).Seconds())
	m.requests.WithLabelValues(procedure, "", codeLabel(err)).Inc()
}

// observeStreamEnd counts one finished stream of procedure, without a
// latency (it lives as long as its client).
func (m *rpcMetrics) observeStreamEnd(procedure string, err error) {
	m.requests.WithLabelValues(procedure, "", codeLabel(err)).Inc()
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
		m.observeUnary(req.Spec().Procedure, start, err)
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
		m.observeStreamEnd(conn.Spec().Procedure, err)
		return err
	}
}
