package client

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

func keysOf(kvs []KeyValue) []string {
	var out []string
	for _, kv := range kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

func TestPutGetDelete(t *testing.T) {
	n := newFakeNode(t, 1)
	c := newTestClient(t, Config{Endpoints: []string{n.addr}})
	ctx := context.Background()
	p1, err := c.Put(ctx, []byte("k"), []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.Put(ctx, []byte("k"), []byte("v2"), IfModRevision(p1.Revision))
	if err != nil {
		t.Fatalf("CAS with the current revision: %v", err)
	}
	kv, err := c.Get(ctx, []byte("k"), Serializable())
	if err != nil {
		t.Fatal(err)
	}
	want := KeyValue{Key: []byte("k"), Value: []byte("v2"), CreateRevision: p1.Revision,
		ModRevision: p2.Revision, Version: 2}
	if !reflect.DeepEqual(*kv, want) {
		t.Errorf("Get = %+v, want %+v", *kv, want)
	}
	if n.lastConsistency() != kvdv1.Consistency_CONSISTENCY_SERIALIZABLE {
		t.Errorf("consistency = %v, want serializable", n.lastConsistency())
	}
	if _, err := c.Get(ctx, []byte("k")); err != nil || n.lastConsistency() != kvdv1.Consistency_CONSISTENCY_LINEARIZABLE {
		t.Errorf("default consistency = %v (%v), want linearizable", n.lastConsistency(), err)
	}
	if _, err := c.Put(ctx, []byte("new"), []byte("x"), IfModRevision(0)); err != nil {
		t.Errorf("create-only put of a new key: %v", err)
	}
	if _, err := c.Put(ctx, []byte("new"), []byte("y"), IfModRevision(0)); !errors.Is(err, ErrCompareFailed) {
		t.Errorf("create-only put of an existing key = %v, want ErrCompareFailed", err)
	}
	del, err := c.Delete(ctx, []byte("k"))
	if err != nil || !del.Deleted {
		t.Errorf("Delete = %+v, %v", del, err)
	}
	del, err = c.Delete(ctx, []byte("k"))
	if err != nil || del.Deleted {
		t.Errorf("Delete of a missing key = %+v, %v; want Deleted false", del, err)
	}
	if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
}

func TestScanFollowsPages(t *testing.T) {
	n := newFakeNode(t, 1)
	n.pageSize = 2
	c := newTestClient(t, Config{Endpoints: []string{n.addr}})
	ctx := context.Background()
	var all []string
	for i := range 7 {
		k := fmt.Sprintf("p/%d", i)
		all = append(all, k)
		if _, err := c.Put(ctx, []byte(k), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Put(ctx, []byte("q/0"), []byte("other prefix")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		limit     int
		want      []string
		wantCalls int
	}{
		{0, all, 4},
		{5, all[:5], 3},
		{2, all[:2], 1},
		{100, all, 4},
	}
	for _, tt := range tests {
		before := n.Calls("Range")
		kvs, err := c.Scan(ctx, []byte("p/"), tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(kvs); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Scan(limit %d) = %v, want %v", tt.limit, got, tt.want)
		}
		if got := n.Calls("Range") - before; got != tt.wantCalls {
			t.Errorf("Scan(limit %d) made %d Range calls, want %d", tt.limit, got, tt.wantCalls)
		}
	}

	page, err := c.Range(ctx, RangeOptions{Prefix: []byte("p/"), Limit: 3, KeysOnly: true, Serializable: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.KVs) != 2 || !page.More || string(page.NextPageToken) != "p/1" || page.KVs[0].Value != nil {
		t.Errorf("Range page = %+v", page)
	}
	if _, err := c.Range(ctx, RangeOptions{Limit: -1}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Range(Limit -1) = %v, want ErrInvalidArgument", err)
	}
	if _, err := c.Scan(ctx, nil, -1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Scan(limit -1) = %v, want ErrInvalidArgument", err)
	}
}

func TestTxn(t *testing.T) {
	n := newFakeNode(t, 1)
	c := newTestClient(t, Config{Endpoints: []string{n.addr}})
	ctx := context.Background()
	p, err := c.Put(ctx, []byte("a"), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Txn(ctx, []Compare{{Key: []byte("a"), ModRevision: p.Revision}, {Key: []byte("b")}},
		[]Op{OpPut([]byte("b"), []byte("2")), OpDelete([]byte("a"))})
	if err != nil || !res.Succeeded || res.Revision != p.Revision+1 {
		t.Fatalf("Txn = %+v, %v; want success at revision %d", res, err, p.Revision+1)
	}
	if _, err := c.Get(ctx, []byte("a")); !errors.Is(err, ErrNotFound) {
		t.Errorf("a after txn: %v, want ErrNotFound", err)
	}
	res, err = c.Txn(ctx, []Compare{{Key: []byte("a")}, {Key: []byte("b"), ModRevision: 1}}, nil)
	if err != nil || res.Succeeded {
		t.Fatalf("failing Txn = %+v, %v; want Succeeded false, no error", res, err)
	}
	if want := []uint64{0, p.Revision + 1}; !reflect.DeepEqual(res.CurrentModRevisions, want) {
		t.Errorf("CurrentModRevisions = %v, want %v", res.CurrentModRevisions, want)
	}
}

func TestMembersAndStatus(t *testing.T) {
	n := newFakeNode(t, 3)
	c := newTestClient(t, Config{Endpoints: []string{n.addr}})
	ctx := context.Background()
	ms, err := c.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Member{
		{ID: 1, Role: RoleVoter, RaftAddr: "n1:7071", APIAddr: "n1:7070", Leader: true, AppliedIndex: 10,
			Ready: true, State: "ready"},
		{ID: 4, Role: RoleObserver, RaftAddr: "n4:7071", State: "catching-up", Lag: 7, Reason: "lag 7 > 5"},
		{ID: 5, Role: RoleObserver, RaftAddr: "n5:7071", APIAddr: "n5:7070", State: "unreachable",
			Reason: "connection refused", DownFor: 12345 * time.Millisecond},
	}
	if !reflect.DeepEqual(ms.Members, want) || ms.LeaderID != 1 || ms.Endpoint != n.addr ||
		ms.ConfigChangeID != 17 || !reflect.DeepEqual(ms.RemovedIDs, []MemberID{9}) {
		t.Errorf("Members = %+v", ms)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != 3 || st.Role != RoleVoter || st.Term != 3 || st.Endpoint != n.addr || !st.Ready ||
		st.Reason != "leader" || st.CatchUpTarget != 12 {
		t.Errorf("Status = %+v", st)
	}
	for r, s := range map[Role]string{RoleVoter: "voter", RoleObserver: "observer", RoleUnspecified: "unspecified"} {
		if r.String() != s {
			t.Errorf("%d.String() = %q, want %q", r, r.String(), s)
		}
	}
}
