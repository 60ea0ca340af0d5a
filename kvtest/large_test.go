package kvtest_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kvd-project/kvd/client"
	"github.com/kvd-project/kvd/kvtest"
)

// With values of 1 MiB, ranges come back in pages of 4 MiB and the stream's
// budget cuts large gets out of big messages; the Go client hides both:
// RangeAll follows the page tokens to every key, and Gets over the shared
// stream fall back to a unary Get when the node answers ResourceExhausted.
func TestClientReadsLargeValuesPastTheCaps(t *testing.T) {
	c := kvtest.NewCluster(t, 1)
	ctx := context.Background()
	// Generous attempts: under -race, gzip of 16 MiB responses takes seconds.
	cl, err := client.New(client.Config{Endpoints: c.Endpoints(), RequestTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 20
	vals := make([][]byte, n)
	for i := range vals {
		vals[i] = bytes.Repeat([]byte{byte('a' + i)}, 1<<20)
		if _, err := cl.Put(ctx, fmt.Appendf(nil, "big/%02d", i), vals[i]); err != nil {
			t.Fatal(err)
		}
	}

	kvs, err := cl.RangeAll(ctx, client.RangeOptions{Prefix: []byte("big/")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != n {
		t.Fatalf("RangeAll returned %d keys, want %d", len(kvs), n)
	}
	for i, kv := range kvs {
		if want := fmt.Sprintf("big/%02d", i); string(kv.Key) != want || !bytes.Equal(kv.Value, vals[i]) {
			t.Fatalf("key %d: %q with %d value bytes, want %q and its value", i, kv.Key, len(kv.Value), want)
		}
	}
	// A limit across page boundaries.
	if kvs, err := cl.RangeAll(ctx, client.RangeOptions{Prefix: []byte("big/"), KeysOnly: true}, 7); err != nil || len(kvs) != 7 {
		t.Fatalf("RangeAll limit 7: %d keys, %v", len(kvs), err)
	}

	// Concurrent gets pile into stream messages of more than 16 MiB.
	var wg sync.WaitGroup
	errs := make(chan error, n*2)
	for round := 0; round < 2; round++ {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				kv, err := cl.Get(ctx, fmt.Appendf(nil, "big/%02d", i))
				if err == nil && !bytes.Equal(kv.Value, vals[i]) {
					err = fmt.Errorf("big/%02d: %d wrong value bytes", i, len(kv.Value))
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
