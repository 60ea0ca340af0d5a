package server

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// Stop waits for every goroutine the server and its node started: the
// HTTP server, the watcher of the node's removal, the SIGHUP reloader,
// the node's loops, the write batcher's proposers and Dragonboat's.
// TestMain checks the whole package the same way once every test ended.
func TestStopWaitsForEveryGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := newPKI(t)
	cert, key := p.issue("node")
	s, _ := startTLS(t, p, cert, key, func(c *Config) { c.ReloadOnSIGHUP = true })
	client := httpsClient(p, nil, true)
	kv := kvdv1connect.NewKVClient(client, "https://"+s.Addr())
	for i := 0; i < 20; i++ { // writes through the batcher
		if _, err := kv.Put(context.Background(), connect.NewRequest(&kvdv1.PutRequest{Key: []byte("k"), Value: []byte("v")})); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	client.CloseIdleConnections()
}
