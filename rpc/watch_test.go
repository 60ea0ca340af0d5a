package rpc_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/kvtest"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/server"
)

// A watch message holds at most Limits.MaxRangeBytes of keys and values.
func TestWatchPagesBoundedByRangeBytes(t *testing.T) {
	c := kvtest.NewCluster(t, 1, func(cfg *server.Config) { cfg.Limits.MaxRangeBytes = 64 })
	var first uint64
	for i := range 10 {
		rev := c.Put(0, fmt.Sprintf("key/%015d", i), "0123456789") // 29 bytes with the key
		if i == 0 {
			first = rev
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := c.KV(0).Watch(ctx, connect.NewRequest(&kvdv1.WatchRequest{Key: []byte("key/"), Prefix: true, StartRevision: first}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	n := 0
	for n < 10 && w.Receive() {
		if got := len(w.Msg().Events); got > 2 {
			t.Fatalf("a message of %d events (%d bytes); want at most 2 (64 bytes)", got, 29*got)
		}
		n += len(w.Msg().Events)
	}
	if n != 10 {
		t.Fatalf("%d events, want 10 (err %v)", n, w.Err())
	}
}

// One revision larger than a message (a Txn of four 1 MiB values: over the
// 4 MiB a plain grpc-go client takes by default) reaches a default grpc-go
// watcher in several messages, in order, each but the last naming the
// revision before it. Sent whole, the client refused it (ResourceExhausted)
// and a resumed watch asked for the same revision forever.
func TestWatchRevisionLargerThanAMessage(t *testing.T) {
	c := kvtest.NewCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kv := kvdv1.NewKVClient(grpcConn(t, c.Endpoint(0)))
	value := bytes.Repeat([]byte("v"), 1<<20)
	req := &kvdv1.TxnRequest{}
	for i := range 4 {
		req.Ops = append(req.Ops, &kvdv1.TxnOp{Op: &kvdv1.TxnOp_Put{Put: &kvdv1.PutRequest{Key: fmt.Appendf(nil, "big/%d", i), Value: value}}})
	}
	txn, err := kv.Txn(ctx, req)
	if err != nil {
		t.Fatalf("txn: %v", err)
	}
	after := c.Put(0, "big/after", "x")
	w, err := kv.Watch(ctx, &kvdv1.WatchRequest{Key: []byte("big/"), Prefix: true, StartRevision: txn.Revision})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var revisions []uint64
	for len(keys) < 5 {
		m, err := w.Recv()
		if err != nil {
			t.Fatalf("after %d events through a default grpc-go client: %v", len(keys), err)
		}
		for _, e := range m.Events {
			keys = append(keys, string(e.Key))
		}
		revisions = append(revisions, m.Revision)
		if len(keys) < 4 && m.Revision >= txn.Revision {
			t.Fatalf("a message with %d of the txn's 4 events names revision %d: want %d (the txn's not all sent)", len(keys), m.Revision, txn.Revision-1)
		}
	}
	want := []string{"big/0", "big/1", "big/2", "big/3", "big/after"}
	if !slices.Equal(keys, want) {
		t.Fatalf("events %v, want %v", keys, want)
	}
	if len(revisions) < 2 || revisions[len(revisions)-1] < after {
		t.Fatalf("message revisions %v: want the txn (%d) in more than one message, the last at %d or later", revisions, txn.Revision, after)
	}
}
