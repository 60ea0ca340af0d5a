package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// fakeNode is an httptest server implementing the generated KV and Cluster
// handlers over a small in-memory store, with controllable failures. It
// tests the client's own logic, not kvd's.
type fakeNode struct {
	kvdv1connect.UnimplementedKVHandler
	kvdv1connect.UnimplementedClusterHandler

	id   uint64
	srv  *httptest.Server
	addr string // host:port

	mu    sync.Mutex
	calls map[string]int
	// fail, if set, is consulted at the start of every call; a non-nil error
	// is returned instead of serving it.
	fail func(proc string) error
	// delay, if set, is waited (or until the call's ctx ends) before serving.
	delay    time.Duration
	hijack   bool // close the connection without answering (HTTP/1.1 only)
	pageSize int  // Range page size; 0 = unlimited
	kvs      map[string]*kvdv1.KeyValue
	rev      uint64
	// consistency is that of the last Get or Range.
	consistency kvdv1.Consistency
	// members is the membership, in ID order; removed the removed IDs.
	members []*kvdv1.Member
	removed []uint64
	// secret, if set, guards the membership changes like kvd's.
	secret string
	// secrets is the Kvd-Join-Secret header of each call, by procedure.
	secrets map[string][]string
	// transferTo is the target of the last TransferLeader.
	transferTo uint64
	// protos are the HTTP versions of the requests served ("HTTP/2.0").
	protos map[string]bool
}

func newFakeNode(t *testing.T, id uint64) *fakeNode {
	t.Helper()
	return startFakeNode(t, id, nil)
}

// startFakeNode starts a fake node; with serverTLS it serves only TLS
// (HTTP/2 by ALPN and HTTP/1.1, like kvd with --cert-file), else HTTP/1.1
// and h2c.
func startFakeNode(t *testing.T, id uint64, serverTLS *tls.Config) *fakeNode {
	t.Helper()
	n := &fakeNode{id: id, calls: map[string]int{}, kvs: map[string]*kvdv1.KeyValue{},
		secrets: map[string][]string{}, protos: map[string]bool{}}
	n.members = []*kvdv1.Member{
		{Id: 1, Role: kvdv1.Role_ROLE_VOTER, RaftAddr: "n1:7071", ApiAddr: "n1:7070", Leader: true,
			AppliedIndex: 10, Ready: true, State: "ready"},
		{Id: 4, Role: kvdv1.Role_ROLE_OBSERVER, RaftAddr: "n4:7071", State: "catching-up", Lag: 7,
			Reason: "lag 7 > 5"},
		{Id: 5, Role: kvdv1.Role_ROLE_OBSERVER, RaftAddr: "n5:7071", ApiAddr: "n5:7070", State: "unreachable",
			Reason: "connection refused", DownForMs: 12345},
	}
	n.removed = []uint64{9}
	mux := http.NewServeMux()
	mux.Handle(kvdv1connect.NewKVHandler(n))
	mux.Handle(kvdv1connect.NewClusterHandler(n))
	var h http.Handler = mux
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		hijack := n.hijack
		n.secrets[r.URL.Path] = append(n.secrets[r.URL.Path], r.Header.Get("Kvd-Join-Secret"))
		n.protos[r.Proto] = true
		n.mu.Unlock()
		if hijack {
			n.count(r.URL.Path)
			if hj, ok := w.(http.Hijacker); ok {
				conn, _, err := hj.Hijack()
				if err == nil {
					_ = conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		}
		mux.ServeHTTP(w, r)
	})
	n.srv = httptest.NewUnstartedServer(h)
	if serverTLS != nil {
		n.srv.EnableHTTP2 = true
		n.srv.TLS = serverTLS
		// Refused handshakes are what the TLS tests are about.
		n.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		n.srv.StartTLS()
	} else {
		n.srv.Config.Protocols = new(http.Protocols)
		n.srv.Config.Protocols.SetHTTP1(true)
		n.srv.Config.Protocols.SetUnencryptedHTTP2(true)
		n.srv.Start()
	}
	t.Cleanup(n.srv.Close)
	n.addr = n.srv.Listener.Addr().String()
	return n
}

// downAddr returns an address nothing listens on.
func downAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func (n *fakeNode) count(proc string) {
	n.mu.Lock()
	n.calls[proc]++
	n.mu.Unlock()
}

// Calls returns how many calls of proc ("Put", "Get", ...) the node saw.
func (n *fakeNode) Calls(proc string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	total := 0
	for p, c := range n.calls {
		if p == proc || p == "/kvd.v1.KV/"+proc || p == "/kvd.v1.Cluster/"+proc {
			total += c
		}
	}
	return total
}

func (n *fakeNode) lastConsistency() kvdv1.Consistency {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.consistency
}

func (n *fakeNode) setFail(f func(proc string) error) {
	n.mu.Lock()
	n.fail = f
	n.mu.Unlock()
}

func (n *fakeNode) setDelay(d time.Duration) {
	n.mu.Lock()
	n.delay = d
	n.mu.Unlock()
}

func (n *fakeNode) setSecret(s string) {
	n.mu.Lock()
	n.secret = s
	n.mu.Unlock()
}

// secretsSent returns the Kvd-Join-Secret header of every call of proc
// ("Put", "Promote", ...).
func (n *fakeNode) secretsSent(proc string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for p, s := range n.secrets {
		if strings.HasSuffix(p, "/"+proc) {
			out = append(out, s...)
		}
	}
	return out
}

func (n *fakeNode) setHijack(on bool) {
	n.mu.Lock()
	n.hijack = on
	n.mu.Unlock()
}

// always returns a fail func answering every call with code; calls in a
// KV/Stream get it as their result (the stream itself stays up, as kvd's
// does: breaking it is asked for by name, "StreamMessage").
func always(code connect.Code) func(string) error {
	return func(proc string) error {
		if proc == "StreamMessage" {
			return nil
		}
		return connect.NewError(code, errors.New("injected "+code.String()))
	}
}

func (n *fakeNode) enter(ctx context.Context, proc string) error {
	n.mu.Lock()
	n.calls[proc]++
	fail, delay := n.fail, n.delay
	n.mu.Unlock()
	if fail != nil {
		if err := fail(proc); err != nil {
			return err
		}
	}
	if delay > 0 && proc != "StreamMessage" { // delays are per call, as with always
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (n *fakeNode) Put(ctx context.Context, req *connect.Request[kvdv1.PutRequest]) (*connect.Response[kvdv1.PutResponse], error) {
	if err := n.enter(ctx, "Put"); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	k := string(req.Msg.GetKey())
	cur := n.kvs[k]
	if req.Msg.IfModRevision != nil && req.Msg.GetIfModRevision() != cur.GetModRevision() {
		err := connect.NewError(connect.CodeFailedPrecondition, errors.New("mod revision mismatch"))
		if d, derr := connect.NewErrorDetail(&kvdv1.KeyValue{Key: req.Msg.GetKey(), ModRevision: cur.GetModRevision()}); derr == nil {
			err.AddDetail(d)
		}
		return nil, err
	}
	n.rev++
	kv := &kvdv1.KeyValue{Key: req.Msg.GetKey(), Value: req.Msg.GetValue(), ModRevision: n.rev,
		CreateRevision: n.rev, Version: 1}
	if cur != nil {
		kv.CreateRevision, kv.Version = cur.GetCreateRevision(), cur.GetVersion()+1
	}
	n.kvs[k] = kv
	return connect.NewResponse(&kvdv1.PutResponse{Revision: n.rev}), nil
}

func (n *fakeNode) Get(ctx context.Context, req *connect.Request[kvdv1.GetRequest]) (*connect.Response[kvdv1.GetResponse], error) {
	if err := n.enter(ctx, "Get"); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.consistency = req.Msg.GetConsistency()
	kv, ok := n.kvs[string(req.Msg.GetKey())]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("key not found"))
	}
	return connect.NewResponse(&kvdv1.GetResponse{Kv: kv, Revision: n.rev}), nil
}

func (n *fakeNode) Delete(ctx context.Context, req *connect.Request[kvdv1.DeleteRequest]) (*connect.Response[kvdv1.DeleteResponse], error) {
	if err := n.enter(ctx, "Delete"); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	k := string(req.Msg.GetKey())
	cur, ok := n.kvs[k]
	if req.Msg.IfModRevision != nil && req.Msg.GetIfModRevision() != cur.GetModRevision() {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("mod revision mismatch"))
	}
	n.rev++
	delete(n.kvs, k)
	var deleted uint64
	if ok {
		deleted = 1
	}
	return connect.NewResponse(&kvdv1.DeleteResponse{Revision: n.rev, Deleted: deleted}), nil
}

func (n *fakeNode) Range(ctx context.Context, req *connect.Request[kvdv1.RangeRequest]) (*connect.Response[kvdv1.RangeResponse], error) {
	if err := n.enter(ctx, "Range"); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.consistency = req.Msg.GetConsistency()
	var keys []string
	for k := range n.kvs {
		if bytes.HasPrefix([]byte(k), req.Msg.GetPrefix()) && k > string(req.Msg.GetPageToken()) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	limit := int(req.Msg.GetLimit())
	if n.pageSize > 0 && (limit == 0 || limit > n.pageSize) {
		limit = n.pageSize
	}
	resp := &kvdv1.RangeResponse{Revision: n.rev}
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
		resp.More = true
		resp.NextPageToken = []byte(keys[len(keys)-1])
	}
	for _, k := range keys {
		kv := n.kvs[k]
		if req.Msg.GetKeysOnly() {
			kv = &kvdv1.KeyValue{Key: kv.GetKey(), ModRevision: kv.GetModRevision()}
		}
		resp.Kvs = append(resp.Kvs, kv)
	}
	return connect.NewResponse(resp), nil
}

func (n *fakeNode) Txn(ctx context.Context, req *connect.Request[kvdv1.TxnRequest]) (*connect.Response[kvdv1.TxnResponse], error) {
	if err := n.enter(ctx, "Txn"); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	resp := &kvdv1.TxnResponse{Succeeded: true}
	var cur []uint64
	for _, c := range req.Msg.GetCompares() {
		got := n.kvs[string(c.GetKey())].GetModRevision()
		cur = append(cur, got)
		if got != c.GetModRevision() {
			resp.Succeeded = false
		}
	}
	if !resp.Succeeded {
		resp.CurrentModRevisions = cur
		return connect.NewResponse(resp), nil
	}
	n.rev++
	for _, op := range req.Msg.GetOps() {
		if p := op.GetPut(); p != nil {
			n.kvs[string(p.GetKey())] = &kvdv1.KeyValue{Key: p.GetKey(), Value: p.GetValue(),
				ModRevision: n.rev, CreateRevision: n.rev, Version: 1}
		} else {
			delete(n.kvs, string(op.GetDelete().GetKey()))
		}
	}
	resp.Revision = n.rev
	return connect.NewResponse(resp), nil
}

func (n *fakeNode) Members(ctx context.Context, _ *connect.Request[kvdv1.MembersRequest]) (*connect.Response[kvdv1.MembersResponse], error) {
	if err := n.enter(ctx, "Members"); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	resp := &kvdv1.MembersResponse{LeaderId: 1, ConfigChangeId: 17, RemovedIds: slices.Clone(n.removed)}
	for _, m := range n.members {
		resp.Members = append(resp.Members, proto.Clone(m).(*kvdv1.Member))
	}
	return connect.NewResponse(resp), nil
}

// guard answers PermissionDenied like kvd when a secret is set and the call
// does not carry it.
func (n *fakeNode) guard(h http.Header) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.secret != "" && h.Get("Kvd-Join-Secret") != n.secret {
		return connect.NewError(connect.CodePermissionDenied, errors.New("wrong or missing join secret"))
	}
	return nil
}

// member returns the index of member id, or -1.
func (n *fakeNode) member(id uint64) int {
	return slices.IndexFunc(n.members, func(m *kvdv1.Member) bool { return m.GetId() == id })
}

func (n *fakeNode) Promote(ctx context.Context, req *connect.Request[kvdv1.PromoteRequest]) (*connect.Response[kvdv1.PromoteResponse], error) {
	if err := n.enter(ctx, "Promote"); err != nil {
		return nil, err
	}
	if err := n.guard(req.Header()); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	i := n.member(req.Msg.GetId())
	if i < 0 {
		return nil, connect.NewError(connect.CodeNotFound,
			fmt.Errorf("membership: not a member: replica %d is not an observer of this cluster", req.Msg.GetId()))
	}
	n.members[i].Role = kvdv1.Role_ROLE_VOTER
	return connect.NewResponse(&kvdv1.PromoteResponse{}), nil
}

func (n *fakeNode) Remove(ctx context.Context, req *connect.Request[kvdv1.RemoveRequest]) (*connect.Response[kvdv1.RemoveResponse], error) {
	if err := n.enter(ctx, "Remove"); err != nil {
		return nil, err
	}
	if err := n.guard(req.Header()); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	id := req.Msg.GetId()
	i := n.member(id)
	if i < 0 {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("membership: not a member: replica %d", id))
	}
	voters := 0
	for _, m := range n.members {
		if m.GetRole() == kvdv1.Role_ROLE_VOTER {
			voters++
		}
	}
	if n.members[i].GetRole() == kvdv1.Role_ROLE_VOTER && voters == 1 {
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("membership: change would break the quorum: replica %d is the only voter", id))
	}
	n.members = slices.Delete(n.members, i, i+1)
	n.removed = append(n.removed, id)
	return connect.NewResponse(&kvdv1.RemoveResponse{}), nil
}

func (n *fakeNode) TransferLeader(ctx context.Context, req *connect.Request[kvdv1.TransferLeaderRequest]) (*connect.Response[kvdv1.TransferLeaderResponse], error) {
	if err := n.enter(ctx, "TransferLeader"); err != nil {
		return nil, err
	}
	if err := n.guard(req.Header()); err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.transferTo = req.Msg.GetTargetId()
	n.mu.Unlock()
	return connect.NewResponse(&kvdv1.TransferLeaderResponse{}), nil
}

func (n *fakeNode) Snapshot(ctx context.Context, req *connect.Request[kvdv1.SnapshotRequest]) (*connect.Response[kvdv1.SnapshotResponse], error) {
	if err := n.enter(ctx, "Snapshot"); err != nil {
		return nil, err
	}
	if err := n.guard(req.Header()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&kvdv1.SnapshotResponse{}), nil
}

func (n *fakeNode) Status(ctx context.Context, _ *connect.Request[kvdv1.StatusRequest]) (*connect.Response[kvdv1.StatusResponse], error) {
	if err := n.enter(ctx, "Status"); err != nil {
		return nil, err
	}
	return connect.NewResponse(&kvdv1.StatusResponse{
		Id: n.id, Role: kvdv1.Role_ROLE_VOTER, LeaderId: 1, Term: 3, AppliedIndex: 10, Ready: true,
		RaftAddr: "n" + strconv.FormatUint(n.id, 10) + ":7071", ApiAddr: n.addr, State: "ready",
		Version: "test", Voters: 3, Reason: "leader", CatchUpTarget: 12,
	}), nil
}

// newTestClient returns a client for endpoints with fast, deterministic
// enough timings for tests.
func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = time.Millisecond
		cfg.BackoffMax = 5 * time.Millisecond
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 2 * time.Second
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stream serves KV/Stream by running each call through the unary methods,
// so the fake's failures and delays apply per call. fail("StreamMessage")
// breaks the stream right after a message arrives, unanswered.
func (n *fakeNode) Stream(ctx context.Context, st *connect.BidiStream[kvdv1.StreamRequest, kvdv1.StreamResponse]) error {
	n.count("Stream")
	for {
		req, err := st.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := n.enter(ctx, "StreamMessage"); err != nil {
			return err
		}
		resp := &kvdv1.StreamResponse{}
		for _, c := range req.Calls {
			r := &kvdv1.StreamResult{Id: c.Id}
			var err error
			switch x := c.Request.(type) {
			case *kvdv1.StreamCall_Put:
				var out *connect.Response[kvdv1.PutResponse]
				if out, err = n.Put(ctx, connect.NewRequest(x.Put)); err == nil {
					r.Response = &kvdv1.StreamResult_Put{Put: out.Msg}
				}
			case *kvdv1.StreamCall_Get:
				var out *connect.Response[kvdv1.GetResponse]
				if out, err = n.Get(ctx, connect.NewRequest(x.Get)); err == nil {
					r.Response = &kvdv1.StreamResult_Get{Get: out.Msg}
				}
			case *kvdv1.StreamCall_Delete:
				var out *connect.Response[kvdv1.DeleteResponse]
				if out, err = n.Delete(ctx, connect.NewRequest(x.Delete)); err == nil {
					r.Response = &kvdv1.StreamResult_Delete{Delete: out.Msg}
				}
			case *kvdv1.StreamCall_Txn:
				var out *connect.Response[kvdv1.TxnResponse]
				if out, err = n.Txn(ctx, connect.NewRequest(x.Txn)); err == nil {
					r.Response = &kvdv1.StreamResult_Txn{Txn: out.Msg}
				}
			}
			if err != nil {
				e := &kvdv1.StreamError{Code: uint32(connect.CodeOf(err)), Message: err.Error()}
				if cur, ok := CurrentModRevision(err); ok {
					e.CurrentModRevision = &cur
				}
				r.Response = &kvdv1.StreamResult_Error{Error: e}
			}
			resp.Results = append(resp.Results, r)
		}
		if err := st.Send(resp); err != nil {
			return err
		}
	}
}
