package rpc_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kvd-project/kvd/client"
	"github.com/kvd-project/kvd/kvtest"
	"github.com/kvd-project/kvd/rpc"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
	"github.com/kvd-project/kvd/server"
)

func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// rpcCount is kvd_rpc_requests_total of procedure (call empty) with code.
func rpcCount(t *testing.T, base, procedure, code string) int {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	re := regexp.MustCompile(`kvd_rpc_requests_total\{call="",code="` + code + `",procedure="` + regexp.QuoteMeta(procedure) + `"\} (\d+)`)
	m := re.FindSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// A grpc-go client with the generated stubs reaches every KV call,
// health, and the errors as connect answers them (code, message, the CAS
// detail); its calls count in kvd_rpc_*. On the same port Connect over
// h2c and HTTP/1.1, gRPC-Web and connect-go's gRPC still work.
func TestGRPCGoClient(t *testing.T) {
	c := kvtest.NewCluster(t, 1)
	addr := c.Endpoint(0)
	base := "http://" + addr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv := kvdv1.NewKVClient(grpcConn(t, addr))

	putsBefore := rpcCount(t, base, kvdv1connect.KVPutProcedure, "ok")
	put, err := kv.Put(ctx, &kvdv1.PutRequest{Key: []byte("a"), Value: []byte("1")})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if _, err := kv.Put(ctx, &kvdv1.PutRequest{Key: []byte("b"), Value: []byte("2")}); err != nil {
		t.Fatalf("put: %v", err)
	}
	got, err := kv.Get(ctx, &kvdv1.GetRequest{Key: []byte("a"), Consistency: kvdv1.Consistency_CONSISTENCY_SERIALIZABLE})
	if err != nil || string(got.Kv.Value) != "1" || got.Kv.ModRevision != put.Revision {
		t.Fatalf("get: %v %v, want 1 at revision %d", got, err, put.Revision)
	}
	_, err = kv.Get(ctx, &kvdv1.GetRequest{Key: []byte("nope")})
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != `key "nope" not found` {
		t.Fatalf("get of a missing key: %v, want NotFound with connect's message", err)
	}
	_, err = kv.Put(ctx, &kvdv1.PutRequest{Key: make([]byte, 5000), Value: []byte("x")})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("put of a 5000-byte key: %v, want InvalidArgument", err)
	}
	// A failed compare: FailedPrecondition with the current revision as a detail.
	wrong := put.Revision + 100
	_, err = kv.Put(ctx, &kvdv1.PutRequest{Key: []byte("a"), Value: []byte("x"), IfModRevision: &wrong})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || len(st.Details()) != 1 {
		t.Fatalf("CAS put: %v (details %v), want FailedPrecondition with a detail", err, st.Details())
	}
	if d, ok := st.Details()[0].(*kvdv1.KeyValue); !ok || d.ModRevision != put.Revision {
		t.Fatalf("CAS detail %v, want mod revision %d", st.Details()[0], put.Revision)
	}
	rng, err := kv.Range(ctx, &kvdv1.RangeRequest{Start: []byte("a"), End: []byte("c")})
	if err != nil || len(rng.Kvs) != 2 {
		t.Fatalf("range: %v %v, want 2 keys", rng, err)
	}
	txn, err := kv.Txn(ctx, &kvdv1.TxnRequest{
		Compares: []*kvdv1.Compare{{Key: []byte("a"), ModRevision: put.Revision}},
		Ops:      []*kvdv1.TxnOp{{Op: &kvdv1.TxnOp_Put{Put: &kvdv1.PutRequest{Key: []byte("c"), Value: []byte("3")}}}},
	})
	if err != nil || !txn.Succeeded {
		t.Fatalf("txn: %v %v", txn, err)
	}
	del, err := kv.Delete(ctx, &kvdv1.DeleteRequest{Key: []byte("b")})
	if err != nil || del.Deleted != 1 {
		t.Fatalf("delete: %v %v", del, err)
	}

	// Watch from the first put: its events, then one made after.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	w, err := kv.Watch(wctx, &kvdv1.WatchRequest{Key: []byte("a"), Prefix: true, StartRevision: put.Revision})
	if err != nil {
		t.Fatal(err)
	}
	// Stream: a put and a get in one message.
	s, err := kv.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(&kvdv1.StreamRequest{Calls: []*kvdv1.StreamCall{
		{Id: 1, Request: &kvdv1.StreamCall_Put{Put: &kvdv1.PutRequest{Key: []byte("a2"), Value: []byte("s")}}},
		{Id: 2, Request: &kvdv1.StreamCall_Get{Get: &kvdv1.GetRequest{Key: []byte("c")}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	sr, err := s.Recv()
	if err != nil || len(sr.Results) != 2 || sr.Results[0].GetPut() == nil || string(sr.Results[1].GetGet().GetKv().GetValue()) != "3" {
		t.Fatalf("stream: %v %v", sr, err)
	}
	s.CloseSend()
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("stream end: %v, want EOF", err)
	}
	var keys []string
	for len(keys) < 2 {
		wr, err := w.Recv()
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		for _, e := range wr.Events {
			keys = append(keys, string(e.Key))
		}
	}
	if keys[0] != "a" || keys[1] != "a2" {
		t.Fatalf("watched %q, want a then a2", keys)
	}

	// Cluster and health.
	cl := kvdv1.NewClusterClient(grpcConn(t, addr))
	if stat, err := cl.Status(ctx, &kvdv1.StatusRequest{}); err != nil || !stat.Ready {
		t.Fatalf("status: %v %v", stat, err)
	}
	mw, err := cl.WatchMembers(wctx, &kvdv1.WatchMembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := mw.Recv(); err != nil || len(m.Members.GetMembers()) != 1 {
		t.Fatalf("watch members: %v %v", m, err)
	}
	hc, err := healthpb.NewHealthClient(grpcConn(t, addr)).Check(ctx, &healthpb.HealthCheckRequest{Service: kvdv1connect.KVName})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hc, err)
	}

	if n := rpcCount(t, base, kvdv1connect.KVPutProcedure, "ok") - putsBefore; n != 2 {
		t.Errorf("kvd_rpc_requests_total of ok puts grew by %d, want 2 (the grpc-go ones)", n)
	}
	if rpcCount(t, base, kvdv1connect.KVPutProcedure, "failed_precondition") != 1 || rpcCount(t, base, kvdv1connect.KVStreamProcedure, "ok") != 1 {
		t.Error("the failed CAS put or the ended stream is not counted")
	}

	// The other protocols, on the same port.
	for name, opts := range map[string][]connect.ClientOption{
		"connect over h2c": nil, "connect-go gRPC": {connect.WithGRPC()}, "gRPC-Web over h2c": {connect.WithGRPCWeb()},
	} {
		r, err := kvdv1connect.NewKVClient(h2cClient(), base, opts...).Get(ctx, connect.NewRequest(&kvdv1.GetRequest{Key: []byte("a2")}))
		if err != nil || string(r.Msg.Kv.Value) != "s" {
			t.Errorf("%s: %v %v", name, r, err)
		}
	}
	for name, opts := range map[string][]connect.ClientOption{"connect over HTTP/1.1": nil, "gRPC-Web over HTTP/1.1": {connect.WithGRPCWeb()}} {
		if _, err := kvdv1connect.NewKVClient(http.DefaultClient, base, opts...).Get(ctx, connect.NewRequest(&kvdv1.GetRequest{Key: []byte("a2")})); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The kvd client over gRPC.
	kc, err := client.New(client.Config{Endpoints: []string{base}, Protocol: client.ProtocolGRPC})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	if v, err := kc.Get(ctx, []byte("a2")); err != nil || string(v.Value) != "s" {
		t.Fatalf("kvd client over gRPC: %v %v", v, err)
	}
}

// Through grpc-go as through connect: a membership call without the join
// secret is refused with PermissionDenied and connect's message; with it
// in the metadata it passes the guard.
func TestGRPCGoGuard(t *testing.T) {
	c := kvtest.NewCluster(t, 1, func(cfg *server.Config) { cfg.JoinSecret = "s3cret" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := kvdv1.NewClusterClient(grpcConn(t, c.Endpoint(0)))
	_, err := cl.Promote(ctx, &kvdv1.PromoteRequest{Id: 99})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "join secret") {
		t.Fatalf("Promote without the secret: %v, want PermissionDenied naming the secret", err)
	}
	bk, err := kvdv1.NewMaintenanceClient(grpcConn(t, c.Endpoint(0))).Backup(ctx, &kvdv1.BackupRequest{})
	if err == nil {
		_, err = bk.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Backup without the secret: %v, want PermissionDenied", err)
	}
	withSecret := metadata.AppendToOutgoingContext(ctx, strings.ToLower(rpc.SecretHeader), "s3cret")
	_, err = cl.Promote(withSecret, &kvdv1.PromoteRequest{Id: 99})
	if err == nil || status.Code(err) == codes.PermissionDenied {
		t.Fatalf("Promote of an unknown replica with the secret: %v, want a non-permission error", err)
	}
}

// A page of a range fits a plain grpc-go client's default receive limit
// (4 MiB, the whole message): --max-range-bytes counts keys and values
// only, so its default leaves room for each key's fields and a last large
// value. 5,000 keys of 1 KiB: the range needs more than one page.
func TestGRPCGoRangePageFitsDefaultReceiveLimit(t *testing.T) {
	c := kvtest.NewCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kv := kvdv1.NewKVClient(grpcConn(t, c.Endpoint(0)))
	value := make([]byte, 1000)
	const keys, perTxn = 5000, 100
	for i := 0; i < keys; i += perTxn {
		req := &kvdv1.TxnRequest{}
		for j := i; j < i+perTxn; j++ {
			req.Ops = append(req.Ops, &kvdv1.TxnOp{Op: &kvdv1.TxnOp_Put{Put: &kvdv1.PutRequest{Key: fmt.Appendf(nil, "k%06d", j), Value: value}}})
		}
		if _, err := kv.Txn(ctx, req); err != nil {
			t.Fatalf("txn: %v", err)
		}
	}
	got, pages := 0, 0
	var token []byte
	for {
		res, err := kv.Range(ctx, &kvdv1.RangeRequest{Start: []byte("k"), End: []byte("l"), PageToken: token})
		if err != nil {
			t.Fatalf("range page %d through a default grpc-go client: %v", pages+1, err)
		}
		got, pages = got+len(res.Kvs), pages+1
		if token = res.NextPageToken; len(token) == 0 {
			break
		}
	}
	if got != keys || pages < 2 {
		t.Fatalf("%d keys in %d pages, want %d keys in more than one page", got, pages, keys)
	}
}
