package rpc_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/kvtest"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// One stream message asking for more large values than the stream's 16 MiB
// values budget gets them in call order as far as the budget goes; the rest
// are answered ResourceExhausted, every call exactly once, and the small
// calls beside them are served as usual.
func TestStreamLargeGetsStayWithinBudget(t *testing.T) {
	c := kvtest.NewCluster(t, 1)
	ctx := context.Background()
	val := bytes.Repeat([]byte("v"), 1<<20)
	for i := 0; i < 20; i++ {
		if _, err := c.KV(0).Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: fmt.Appendf(nil, "big/%02d", i), Value: val})); err != nil {
			t.Fatal(err)
		}
	}
	c.Put(0, "small", "s")

	req := &kvdv1.StreamRequest{}
	get := func(id uint64, key string) {
		req.Calls = append(req.Calls, &kvdv1.StreamCall{Id: id, Request: &kvdv1.StreamCall_Get{Get: &kvdv1.GetRequest{Key: []byte(key)}}})
	}
	for i := 0; i < 20; i++ {
		get(uint64(i+1), fmt.Sprintf("big/%02d", i))
	}
	get(100, "small")
	get(101, "missing")
	req.Calls = append(req.Calls, &kvdv1.StreamCall{Id: 102, Request: &kvdv1.StreamCall_Put{Put: &kvdv1.PutRequest{Key: []byte("p"), Value: []byte("x")}}})

	kv := kvdv1connect.NewKVClient(h2cClient(), "http://"+c.Endpoint(0))
	st := kv.Stream(ctx)
	defer st.CloseResponse()
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Receive()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[uint64]*kvdv1.StreamResult{}
	for _, r := range resp.Results {
		if byID[r.Id] != nil {
			t.Fatalf("call %d answered twice", r.Id)
		}
		byID[r.Id] = r
	}
	if len(byID) != len(req.Calls) {
		t.Fatalf("%d answers for %d calls", len(byID), len(req.Calls))
	}
	// 15 values of 1 MiB with their keys fit in 16 MiB; the 16th does not.
	for id := uint64(1); id <= 20; id++ {
		r := byID[id]
		if id <= 15 {
			if got := len(r.GetGet().GetKv().GetValue()); got != len(val) {
				t.Errorf("call %d: %d value bytes (%v), want %d", id, got, r.GetError(), len(val))
			}
			continue
		}
		if e := r.GetError(); e == nil || connect.Code(e.Code) != connect.CodeResourceExhausted {
			t.Errorf("call %d: %v, want ResourceExhausted past the budget", id, r.Response)
		}
	}
	if got := string(byID[100].GetGet().GetKv().GetValue()); got != "s" {
		t.Errorf("small get = %q (%v), want s", got, byID[100].GetError())
	}
	if e := byID[101].GetError(); e == nil || connect.Code(e.Code) != connect.CodeNotFound {
		t.Errorf("missing get: %v, want NotFound", byID[101].Response)
	}
	if byID[102].GetPut() == nil {
		t.Errorf("put: %v", byID[102].Response)
	}
	_ = st.CloseRequest()
}
