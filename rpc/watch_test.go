package rpc_test

import (
	"context"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/kvtest"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/server"
)

// A watch message holds at most Limits.MaxRangeBytes of keys and values,
// plus the rest of the revision that reached it.
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
		if got := len(w.Msg().Events); got > 3 {
			t.Fatalf("a message of %d events (%d bytes); want at most 3 (64 bytes passed by one revision)", got, 29*got)
		}
		n += len(w.Msg().Events)
	}
	if n != 10 {
		t.Fatalf("%d events, want 10 (err %v)", n, w.Err())
	}
}
