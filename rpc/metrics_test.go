package rpc

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/node"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
	"github.com/kvd-project/kvd/statemachine"
)

// fakeStore answers writes (a compare always fails), gets of any key but
// "missing", and refuses serializable reads as a node that is not ready.
type fakeStore struct{}

func (fakeStore) Write(ctx context.Context, cmd statemachine.Command) (statemachine.Result, error) {
	rs, errs := fakeStore{}.WriteAll(ctx, []statemachine.Command{cmd})
	return rs[0], errs[0]
}

func (fakeStore) WriteAll(_ context.Context, cmds []statemachine.Command) ([]statemachine.Result, []error) {
	rs := make([]statemachine.Result, len(cmds))
	for i, c := range cmds {
		rs[i] = statemachine.Result{Succeeded: len(c.Compares) == 0, Revision: 5}
		if !rs[i].Succeeded {
			rs[i].Current = []uint64{3}
		}
	}
	return rs, make([]error, len(cmds))
}

func (fakeStore) Get(ctx context.Context, q statemachine.GetQuery, mode node.ReadMode) (statemachine.GetResult, error) {
	vs, err := fakeStore{}.ReadAll(ctx, []statemachine.GetQuery{q}, mode)
	if err != nil {
		return statemachine.GetResult{}, err
	}
	return vs[0], nil
}

func (fakeStore) Range(context.Context, statemachine.RangeQuery, node.ReadMode) (statemachine.RangeResult, error) {
	panic("Range")
}

func (fakeStore) ReadAll(_ context.Context, qs []statemachine.GetQuery, mode node.ReadMode) ([]statemachine.GetResult, error) {
	if mode == node.Serializable {
		return nil, &node.NotReadyError{State: membership.StateIsolated, Reason: "no leader"}
	}
	out := make([]statemachine.GetResult, len(qs))
	for i, q := range qs {
		if string(q.Key) == "missing" {
			continue
		}
		out[i] = statemachine.GetResult{KV: &statemachine.KeyValue{Key: q.Key, Value: []byte("v")}, ValueSize: 1}
	}
	return out, nil
}

type fakeNode struct {
	fakeStore
	*fakeView
}

func (fakeNode) Ready() bool { return true }

// The calls a stream carries are counted in kvd_rpc_* like unary calls:
// procedure KV/Stream, labelled by call kind, with their own code (failed
// reads included) and latency; the stream itself is counted once when it
// ends, with the call label empty, as are unary calls.
func TestStreamMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	mux := http.NewServeMux()
	Mount(mux, fakeNode{fakeView: threeVotersView()}, Options{Limits: DefaultLimits(), Registry: reg})
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	kv := kvdv1connect.NewKVClient(srv.Client(), srv.URL, connect.WithGRPC())
	ctx := context.Background()

	if _, err := kv.Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte("u"), Value: []byte("x")})); err != nil {
		t.Fatal(err)
	}
	st := kv.Stream(ctx)
	rev := uint64(2)
	calls := []*kvdv1.StreamCall{
		{Id: 1, Request: &kvdv1.StreamCall_Put{Put: &kvdv1.PutRequest{Key: []byte("p"), Value: []byte("x")}}},
		{Id: 2, Request: &kvdv1.StreamCall_Delete{Delete: &kvdv1.DeleteRequest{Key: []byte("d"), IfModRevision: &rev}}},
		{Id: 3, Request: &kvdv1.StreamCall_Txn{Txn: &kvdv1.TxnRequest{Ops: []*kvdv1.TxnOp{{Op: &kvdv1.TxnOp_Delete{Delete: &kvdv1.DeleteRequest{Key: []byte("t")}}}}}}},
		{Id: 4, Request: &kvdv1.StreamCall_Get{Get: &kvdv1.GetRequest{Key: []byte("g")}}},
		{Id: 5, Request: &kvdv1.StreamCall_Get{Get: &kvdv1.GetRequest{Key: []byte("missing")}}},
		{Id: 6, Request: &kvdv1.StreamCall_Get{Get: &kvdv1.GetRequest{Key: []byte("s"), Consistency: kvdv1.Consistency_CONSISTENCY_SERIALIZABLE}}},
		{Id: 7},
	}
	if err := st.Send(&kvdv1.StreamRequest{Calls: calls}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != len(calls) {
		t.Fatalf("%d results for %d calls", len(resp.Results), len(calls))
	}
	if err := st.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Receive(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v", err)
	}
	_ = st.CloseResponse()

	const stream = kvdv1connect.KVStreamProcedure
	for _, c := range []struct {
		procedure, call, code string
		want                  float64
	}{
		{kvdv1connect.KVPutProcedure, "", "ok", 1},
		{stream, "put", "ok", 1},
		{stream, "delete", "failed_precondition", 1},
		{stream, "txn", "ok", 1},
		{stream, "get", "ok", 1},
		{stream, "get", "not_found", 1},
		{stream, "get", "unavailable", 1},
		{stream, "none", "invalid_argument", 1},
		{stream, "", "ok", 1}, // the stream itself, once it ended
	} {
		labels := map[string]string{"procedure": c.procedure, "call": c.call, "code": c.code}
		if got := metricValue(t, reg, "kvd_rpc_requests_total", labels); got != c.want {
			t.Errorf("kvd_rpc_requests_total%v = %v, want %v", labels, got, c.want)
		}
	}
	for call, want := range map[string]float64{"": 0, "get": 3, "put": 1} {
		labels := map[string]string{"procedure": stream, "call": call}
		if got := metricValue(t, reg, "kvd_rpc_duration_seconds", labels); got != want {
			t.Errorf("kvd_rpc_duration_seconds%v count = %v, want %v", labels, got, want)
		}
	}
}

// metricValue is a counter's value or a histogram's sample count, for the
// series with exactly these labels (0 when there is none).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			if !sameLabels(have, labels) {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// sameLabels: the same labels, an empty value being the same as no label.
func sameLabels(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}
