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
	"github.com/kvd-project/kvd/server"
)

// pageAll reads every key with prefix p at the maximum limit, following page
// tokens, and returns the pages.
func pageAll(t *testing.T, kv kvdv1connect.KVClient, p string, keysOnly bool) [][]*kvdv1.KeyValue {
	t.Helper()
	var pages [][]*kvdv1.KeyValue
	var token []byte
	for len(pages) < 1000 {
		resp, err := kv.Range(context.Background(), connect.NewRequest(&kvdv1.RangeRequest{
			Prefix: []byte(p), Limit: 10000, KeysOnly: keysOnly, PageToken: token}))
		if err != nil {
			t.Fatalf("range page %d: %v", len(pages), err)
		}
		pages = append(pages, resp.Msg.Kvs)
		if !resp.Msg.More {
			return pages
		}
		if len(resp.Msg.NextPageToken) == 0 {
			t.Fatalf("page %d: more without a next_page_token", len(pages))
		}
		token = resp.Msg.NextPageToken
	}
	t.Fatal("range did not end after 1000 pages")
	return nil
}

// checkPages fails unless the pages hold want's keys exactly once, in order,
// each page at most maxBytes of keys and values (or a single key).
func checkPages(t *testing.T, pages [][]*kvdv1.KeyValue, want []string, valueSize, maxBytes int) {
	t.Helper()
	var got []string
	for i, page := range pages {
		size := 0
		for _, kv := range page {
			size += len(kv.Key) + len(kv.Value)
			if len(kv.Value) != valueSize {
				t.Fatalf("page %d key %q: %d value bytes, want %d", i, kv.Key, len(kv.Value), valueSize)
			}
			got = append(got, string(kv.Key))
		}
		if size > maxBytes && len(page) > 1 {
			t.Errorf("page %d: %d keys of %d bytes, over the %d-byte cap", i, len(page), size, maxBytes)
		}
		if len(page) == 0 && i < len(pages)-1 {
			t.Errorf("page %d is empty but more followed", i)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages returned keys\n%v\nwant each once, in order:\n%v", got, want)
	}
}

// A Range at the maximum limit over 1 MiB values comes back in pages of at
// most 3 MiB (the default cap), which together hold every key exactly once,
// in order; a value larger than the cap comes alone; keys-only pages are
// capped by their key bytes.
func TestRangePagesAreCappedInBytes(t *testing.T) {
	t.Run("1 MiB values, default cap", func(t *testing.T) {
		c := kvtest.NewCluster(t, 1)
		val := bytes.Repeat([]byte("v"), 1<<20)
		var want []string
		for i := 0; i < 11; i++ {
			k := fmt.Sprintf("big/%02d", i)
			if _, err := c.KV(0).Put(context.Background(), connect.NewRequest(&kvdv1.PutRequest{Key: []byte(k), Value: val})); err != nil {
				t.Fatal(err)
			}
			want = append(want, k)
		}
		pages := pageAll(t, c.KV(0), "big/", false)
		checkPages(t, pages, want, len(val), 3<<20)
		// 2 values of 1 MiB and their keys fit in 3 MiB, 3 do not.
		if len(pages) != 6 || len(pages[0]) != 2 {
			t.Errorf("%d pages, the first of %d keys; want 6 pages of 2, 2, 2, 2, 2, 1", len(pages), len(pages[0]))
		}
		keyPages := pageAll(t, c.KV(0), "big/", true)
		checkPages(t, keyPages, want, 0, 3<<20)
		if len(keyPages) != 1 {
			t.Errorf("keys only: %d pages, want 1 (the keys are a few bytes)", len(keyPages))
		}
	})
	t.Run("64-byte cap", func(t *testing.T) {
		c := kvtest.NewCluster(t, 1, func(cfg *server.Config) { cfg.Limits.MaxRangeBytes = 64 })
		var want []string
		for i := 0; i < 20; i++ {
			k := fmt.Sprintf("key/%015d", i) // 19 bytes
			c.Put(0, k, "0123456789")        // 29 bytes with the key
			want = append(want, k)
		}
		pages := pageAll(t, c.KV(0), "key/", false)
		checkPages(t, pages, want, 10, 64)
		if len(pages) != 10 {
			t.Errorf("%d pages, want 10 of 2 keys (58 bytes)", len(pages))
		}
		keyPages := pageAll(t, c.KV(0), "key/", true)
		checkPages(t, keyPages, want, 0, 64)
		if len(keyPages) != 7 {
			t.Errorf("keys only: %d pages, want 7 (3 keys of 19 bytes a page)", len(keyPages))
		}
		// A value larger than the cap comes alone, and paging goes on.
		c.Put(0, "key/000000000000009x", string(bytes.Repeat([]byte("x"), 100)))
		pages = pageAll(t, c.KV(0), "key/", false)
		n := 0
		for _, p := range pages {
			n += len(p)
			for _, kv := range p {
				if len(kv.Value) == 100 && len(p) != 1 {
					t.Errorf("the 100-byte value came with %d other keys", len(p)-1)
				}
			}
		}
		if n != 21 {
			t.Errorf("%d keys, want 21", n)
		}
	})
}
