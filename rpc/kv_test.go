package rpc_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/kvtest"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

func u64(v uint64) *uint64 { return &v }

// Every limit violation is InvalidArgument naming the limit, and nothing is
// written: the applied index does not move and the keys stay absent.
func TestBadInputIsRejectedAndWritesNothing(t *testing.T) {
	c := kvtest.NewCluster(t, 1)
	kv := c.KV(0)
	ctx := context.Background()
	c.Put(0, "existing", "v1")

	big := bytes.Repeat([]byte("k"), 4097)
	huge := bytes.Repeat([]byte("v"), 1<<20+1)
	cases := []struct {
		name string
		call func() error
		want string // part of the message
	}{
		{"put empty key", func() error {
			_, err := kv.Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: nil, Value: []byte("x")}))
			return err
		}, "key is empty"},
		{"put key over 4096 bytes", func() error {
			_, err := kv.Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: big, Value: []byte("x")}))
			return err
		}, "maximum key size is 4096"},
		{"put value over 1 MiB", func() error {
			_, err := kv.Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte("existing"), Value: huge}))
			return err
		}, "maximum value size is 1048576"},
		{"get key over 4096 bytes", func() error {
			_, err := kv.Get(ctx, connect.NewRequest(&kvdv1.GetRequest{Key: big}))
			return err
		}, "maximum key size"},
		{"get unknown consistency", func() error {
			_, err := kv.Get(ctx, connect.NewRequest(&kvdv1.GetRequest{Key: []byte("a"), Consistency: 7}))
			return err
		}, "unknown consistency"},
		{"delete empty key", func() error {
			_, err := kv.Delete(ctx, connect.NewRequest(&kvdv1.DeleteRequest{}))
			return err
		}, "key is empty"},
		{"range limit over 10000", func() error {
			_, err := kv.Range(ctx, connect.NewRequest(&kvdv1.RangeRequest{Prefix: []byte("a"), Limit: 10001}))
			return err
		}, "maximum range limit 10000"},
		{"range prefix and start", func() error {
			_, err := kv.Range(ctx, connect.NewRequest(&kvdv1.RangeRequest{Prefix: []byte("a"), Start: []byte("a")}))
			return err
		}, "either prefix or start/end"},
		{"range start above end", func() error {
			_, err := kv.Range(ctx, connect.NewRequest(&kvdv1.RangeRequest{Start: []byte("b"), End: []byte("a")}))
			return err
		}, "not below end"},
		{"range page token outside", func() error {
			_, err := kv.Range(ctx, connect.NewRequest(&kvdv1.RangeRequest{Start: []byte("b"), End: []byte("c"), PageToken: []byte("d")}))
			return err
		}, "page_token is outside"},
		{"txn without ops", func() error {
			_, err := kv.Txn(ctx, connect.NewRequest(&kvdv1.TxnRequest{Compares: []*kvdv1.Compare{{Key: []byte("a")}}}))
			return err
		}, "no ops"},
		{"txn with too many ops", func() error {
			ops := make([]*kvdv1.TxnOp, 129)
			for i := range ops {
				ops[i] = &kvdv1.TxnOp{Op: &kvdv1.TxnOp_Put{Put: &kvdv1.PutRequest{Key: []byte("t"), Value: []byte("x")}}}
			}
			_, err := kv.Txn(ctx, connect.NewRequest(&kvdv1.TxnRequest{Ops: ops}))
			return err
		}, "maximum is 128"},
		{"txn with one bad key among good ones", func() error {
			_, err := kv.Txn(ctx, connect.NewRequest(&kvdv1.TxnRequest{Ops: []*kvdv1.TxnOp{
				{Op: &kvdv1.TxnOp_Put{Put: &kvdv1.PutRequest{Key: []byte("t1"), Value: []byte("x")}}},
				{Op: &kvdv1.TxnOp_Put{Put: &kvdv1.PutRequest{Key: big, Value: []byte("x")}}},
			}}))
			return err
		}, "txn op 1: key is 4097 bytes"},
		{"txn op without put or delete", func() error {
			_, err := kv.Txn(ctx, connect.NewRequest(&kvdv1.TxnRequest{Ops: []*kvdv1.TxnOp{{}}}))
			return err
		}, "set put or delete"},
		{"txn put with if_mod_revision", func() error {
			_, err := kv.Txn(ctx, connect.NewRequest(&kvdv1.TxnRequest{Ops: []*kvdv1.TxnOp{
				{Op: &kvdv1.TxnOp_Put{Put: &kvdv1.PutRequest{Key: []byte("t1"), IfModRevision: u64(1)}}},
			}}))
			return err
		}, "add a compare instead"},
	}
	// The first leader writes the cluster ID once: wait for it, so that
	// only the rejected requests below could move the applied index.
	for deadline := time.Now().Add(10 * time.Second); c.Server(0).Node().ClusterID() == ""; {
		if time.Now().After(deadline) {
			t.Fatal("no cluster ID after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	applied := c.Server(0).Node().Status().Applied
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("got %v (code %v), want InvalidArgument", err, connect.CodeOf(err))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("message %q does not say %q", err.Error(), tc.want)
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	if now := c.Server(0).Node().Status().Applied; now != applied {
		t.Fatalf("applied index moved from %d to %d: a rejected request was proposed", applied, now)
	}
	if got, err := c.Get(0, "existing", false); err != nil || got != "v1" {
		t.Fatalf("existing key = %q, %v; want v1", got, err)
	}
	for _, k := range []string{"t", "t1"} {
		if _, err := c.Get(0, k, false); connect.CodeOf(err) != connect.CodeNotFound {
			t.Fatalf("key %q: %v, want NotFound", k, err)
		}
	}
}

// The data path through the API: revisions, versions, CAS, delete, range
// paging and Txn, on a real single-node cluster.
func TestKVSemantics(t *testing.T) {
	c := kvtest.NewCluster(t, 1)
	kv := c.KV(0)
	ctx := context.Background()

	r1, err := kv.Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte("a"), Value: []byte("1")}))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := kv.Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte("a"), Value: []byte("2")}))
	if err != nil {
		t.Fatal(err)
	}
	if r2.Msg.Revision <= r1.Msg.Revision {
		t.Fatalf("revisions %d then %d: not increasing", r1.Msg.Revision, r2.Msg.Revision)
	}
	g, err := kv.Get(ctx, connect.NewRequest(&kvdv1.GetRequest{Key: []byte("a")}))
	if err != nil {
		t.Fatal(err)
	}
	if kvp := g.Msg.Kv; string(kvp.Value) != "2" || kvp.CreateRevision != r1.Msg.Revision || kvp.ModRevision != r2.Msg.Revision || kvp.Version != 2 {
		t.Fatalf("get a = %+v; want value 2, create %d, mod %d, version 2", kvp, r1.Msg.Revision, r2.Msg.Revision)
	}

	// CAS with a stale revision fails and says the current one.
	_, err = kv.Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte("a"), Value: []byte("3"), IfModRevision: u64(r1.Msg.Revision)}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "mod revision") {
		t.Fatalf("stale CAS: %v, want FailedPrecondition", err)
	}
	if _, err = kv.Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte("a"), Value: []byte("3"), IfModRevision: u64(r2.Msg.Revision)})); err != nil {
		t.Fatalf("CAS with current revision: %v", err)
	}
	// Create-only CAS.
	if _, err = kv.Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte("a"), Value: []byte("x"), IfModRevision: u64(0)})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("create-only put of an existing key: %v", err)
	}

	// Delete reports whether the key existed.
	d, err := kv.Delete(ctx, connect.NewRequest(&kvdv1.DeleteRequest{Key: []byte("a")}))
	if err != nil || d.Msg.Deleted != 1 {
		t.Fatalf("delete a: %v, deleted %v", err, d)
	}
	d, err = kv.Delete(ctx, connect.NewRequest(&kvdv1.DeleteRequest{Key: []byte("a")}))
	if err != nil || d.Msg.Deleted != 0 {
		t.Fatalf("delete missing a: %v, deleted %v", err, d)
	}

	// Range pages through a prefix in key order.
	for i := 0; i < 25; i++ {
		c.Put(0, "p/"+string(rune('a'+i)), "v")
	}
	c.Put(0, "q", "outside")
	var keys []string
	var token []byte
	for pages := 0; ; pages++ {
		resp, err := kv.Range(ctx, connect.NewRequest(&kvdv1.RangeRequest{Prefix: []byte("p/"), Limit: 10, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Msg.Kvs {
			keys = append(keys, string(kv.Key))
		}
		if !resp.Msg.More {
			break
		}
		if pages > 5 {
			t.Fatal("range paging does not end")
		}
		token = resp.Msg.NextPageToken
	}
	if len(keys) != 25 || keys[0] != "p/a" || keys[24] != "p/y" {
		t.Fatalf("range p/ = %v", keys)
	}

	// Txn: all or nothing.
	txn := func(rev uint64) *kvdv1.TxnResponse {
		resp, err := kv.Txn(ctx, connect.NewRequest(&kvdv1.TxnRequest{
			Compares: []*kvdv1.Compare{{Key: []byte("q"), ModRevision: rev}},
			Ops: []*kvdv1.TxnOp{
				{Op: &kvdv1.TxnOp_Put{Put: &kvdv1.PutRequest{Key: []byte("t1"), Value: []byte("x")}}},
				{Op: &kvdv1.TxnOp_Delete{Delete: &kvdv1.DeleteRequest{Key: []byte("q")}}},
			},
		}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg
	}
	q, _ := kv.Get(ctx, connect.NewRequest(&kvdv1.GetRequest{Key: []byte("q")}))
	if r := txn(q.Msg.Kv.ModRevision + 100); r.Succeeded || len(r.CurrentModRevisions) != 1 || r.CurrentModRevisions[0] != q.Msg.Kv.ModRevision {
		t.Fatalf("failing txn = %+v", r)
	}
	if _, err := c.Get(0, "t1", false); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("failed txn wrote t1: %v", err)
	}
	if r := txn(q.Msg.Kv.ModRevision); !r.Succeeded {
		t.Fatalf("txn with the right revision failed: %+v", r)
	}
	if _, err := c.Get(0, "q", false); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("txn did not delete q: %v", err)
	}
	if v, err := c.Get(0, "t1", true); err != nil || v != "x" {
		t.Fatalf("t1 = %q, %v", v, err)
	}
}
