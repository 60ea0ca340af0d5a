package server

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// ownGoroutines lists the goroutines whose stacks run code of kvd's server
// or node packages (Dragonboat's own goroutines are not ours to count).
func ownGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "kvd-project/kvd/server.") || strings.Contains(g, "kvd-project/kvd/node.") {
			if !strings.Contains(g, "TestStopWaitsForEveryGoroutine") {
				out = append(out, g)
			}
		}
	}
	return out
}

// Stop waits for every goroutine the server and its node started: the
// HTTP server, the watcher of the node's removal, the SIGHUP reloader,
// the node's loops and the write batcher's proposers.
func TestStopWaitsForEveryGoroutine(t *testing.T) {
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
	time.Sleep(100 * time.Millisecond) // goroutines that were told to end, ending
	if left := ownGoroutines(); len(left) > 0 {
		t.Fatalf("%d goroutines of the server or node outlive Stop:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}
