package rpc_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"golang.org/x/net/http2"

	"github.com/kvd-project/kvd/kvtest"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

func h2cClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

// The same API answers gRPC (h2c), gRPC-Web, Connect and plain HTTP/JSON,
// and gRPC health says the KV service is serving once the node is ready.
func TestProtocols(t *testing.T) {
	c := kvtest.NewCluster(t, 1)
	base := "http://" + c.Endpoint(0)
	ctx := context.Background()

	grpcKV := kvdv1connect.NewKVClient(h2cClient(), base, connect.WithGRPC())
	if _, err := grpcKV.Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte("k"), Value: []byte("grpc")})); err != nil {
		t.Fatalf("gRPC put: %v", err)
	}
	webKV := kvdv1connect.NewKVClient(http.DefaultClient, base, connect.WithGRPCWeb())
	got, err := webKV.Get(ctx, connect.NewRequest(&kvdv1.GetRequest{Key: []byte("k")}))
	if err != nil || string(got.Msg.Kv.Value) != "grpc" {
		t.Fatalf("gRPC-Web get: %v %v", got, err)
	}
	_, err = grpcKV.Get(ctx, connect.NewRequest(&kvdv1.GetRequest{Key: []byte("nope")}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("gRPC get of a missing key: %v, want NotFound", err)
	}

	// Plain HTTP/JSON, as curl would send it.
	resp, err := http.Post(base+"/kvd.v1.KV/Get", "application/json", strings.NewReader(`{"key":"aw=="}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"value":"Z3JwYw=="`) {
		t.Fatalf("HTTP/JSON get: %d %s", resp.StatusCode, body)
	}

	health := grpchealth.NewClient(h2cClient(), base, connect.WithGRPC())
	for _, svc := range []string{"", kvdv1connect.KVName} {
		hr, err := health.Check(ctx, &grpchealth.CheckRequest{Service: svc})
		if err != nil || hr.Status != grpchealth.StatusServing {
			t.Fatalf("health of %q: %v %v", svc, hr, err)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		if path == "/metrics" {
			for _, m := range []string{"kvd_node_role 1", "kvd_node_applied_index", "kvd_node_propose_duration_seconds_bucket", "kvd_node_read_duration_seconds_bucket", "kvd_rpc_requests_total", "kvd_node_leader_id 1"} {
				if !strings.Contains(string(body), m) {
					t.Errorf("/metrics lacks %s", m)
				}
			}
		}
	}
}
