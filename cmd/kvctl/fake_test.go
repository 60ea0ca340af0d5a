package main

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
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// fakeKVD is an httptest server implementing the generated handlers over an
// in-memory map, with injectable failures. It tests kvctl's wiring and
// output, not kvd.
type fakeKVD struct {
	kvdv1connect.UnimplementedKVHandler
	kvdv1connect.UnimplementedClusterHandler

	addr string

	mu    sync.Mutex
	kvs   map[string]*kvdv1.KeyValue
	rev   uint64
	fail  map[string]error // by method name
	delay time.Duration
	// consistency of the last read.
	consistency kvdv1.Consistency
	// members is the membership; secret, if set, guards changes to it.
	members []*kvdv1.Member
	secret  string
	// status is what Status answers.
	status *kvdv1.StatusResponse
}

func newFakeKVD(t *testing.T) *fakeKVD {
	t.Helper()
	return startFakeKVD(t, nil)
}

// startFakeKVD starts a fake node; with serverTLS it serves only TLS
// (HTTP/2 by ALPN and HTTP/1.1, like kvd with --cert-file), else HTTP/1.1
// and h2c.
func startFakeKVD(t *testing.T, serverTLS *tls.Config) *fakeKVD {
	t.Helper()
	f := &fakeKVD{kvs: map[string]*kvdv1.KeyValue{}, fail: map[string]error{}}
	f.members = []*kvdv1.Member{
		{Id: 1, Role: kvdv1.Role_ROLE_VOTER, RaftAddr: "10.0.0.1:7071", ApiAddr: "10.0.0.1:7070",
			Leader: true, AppliedIndex: 42, Ready: true, State: "ready"},
		{Id: 2, Role: kvdv1.Role_ROLE_VOTER, RaftAddr: "10.0.0.2:7071", ApiAddr: "10.0.0.2:7070",
			AppliedIndex: 41, State: "unreachable", Lag: 1, Reason: "connection refused", DownForMs: 12_400},
		{Id: 4, Role: kvdv1.Role_ROLE_OBSERVER, RaftAddr: "10.0.0.4:7071", State: "catching-up",
			AppliedIndex: 30, Lag: 12, Reason: "lag 12 above promotion threshold 5"},
	}
	f.status = &kvdv1.StatusResponse{
		Id: 2, Role: kvdv1.Role_ROLE_VOTER, LeaderId: 1, Term: 5, AppliedIndex: 41, Ready: true,
		RaftAddr: "10.0.0.2:7071", State: "ready", Version: "v0.1.0-test", Voters: 3,
		Observers: 1,
	}
	mux := http.NewServeMux()
	mux.Handle(kvdv1connect.NewKVHandler(f))
	mux.Handle(kvdv1connect.NewClusterHandler(f))
	srv := httptest.NewUnstartedServer(mux)
	if serverTLS != nil {
		srv.EnableHTTP2 = true
		srv.TLS = serverTLS
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
		srv.StartTLS()
	} else {
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetHTTP1(true)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		srv.Start()
	}
	t.Cleanup(srv.Close)
	f.addr = srv.Listener.Addr().String()
	return f
}

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

func (f *fakeKVD) failWith(method string, code connect.Code) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = connect.NewError(code, errors.New("injected "+code.String()))
}

func (f *fakeKVD) setDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

func (f *fakeKVD) lastConsistency() kvdv1.Consistency {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.consistency
}

// set stores a key directly, as if put at the next revision.
func (f *fakeKVD) set(key, value string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	f.kvs[key] = &kvdv1.KeyValue{Key: []byte(key), Value: []byte(value), CreateRevision: f.rev,
		ModRevision: f.rev, Version: 1}
	return f.rev
}

// enter applies the injected failure and delay, then locks f for the call.
func (f *fakeKVD) enter(ctx context.Context, method string) error {
	f.mu.Lock()
	err, delay := f.fail[method], f.delay
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	return nil
}

func (f *fakeKVD) Put(ctx context.Context, req *connect.Request[kvdv1.PutRequest]) (*connect.Response[kvdv1.PutResponse], error) {
	if err := f.enter(ctx, "Put"); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	k := string(req.Msg.GetKey())
	cur := f.kvs[k]
	if req.Msg.IfModRevision != nil && req.Msg.GetIfModRevision() != cur.GetModRevision() {
		err := connect.NewError(connect.CodeFailedPrecondition, errors.New("mod revision mismatch"))
		d, _ := connect.NewErrorDetail(&kvdv1.KeyValue{Key: req.Msg.GetKey(), ModRevision: cur.GetModRevision()})
		err.AddDetail(d)
		return nil, err
	}
	f.rev++
	kv := &kvdv1.KeyValue{Key: req.Msg.GetKey(), Value: req.Msg.GetValue(), CreateRevision: f.rev,
		ModRevision: f.rev, Version: 1}
	if cur != nil {
		kv.CreateRevision, kv.Version = cur.GetCreateRevision(), cur.GetVersion()+1
	}
	f.kvs[k] = kv
	return connect.NewResponse(&kvdv1.PutResponse{Revision: f.rev}), nil
}

func (f *fakeKVD) Get(ctx context.Context, req *connect.Request[kvdv1.GetRequest]) (*connect.Response[kvdv1.GetResponse], error) {
	if err := f.enter(ctx, "Get"); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	f.consistency = req.Msg.GetConsistency()
	kv, ok := f.kvs[string(req.Msg.GetKey())]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("key not found"))
	}
	return connect.NewResponse(&kvdv1.GetResponse{Kv: kv, Revision: f.rev}), nil
}

func (f *fakeKVD) Delete(ctx context.Context, req *connect.Request[kvdv1.DeleteRequest]) (*connect.Response[kvdv1.DeleteResponse], error) {
	if err := f.enter(ctx, "Delete"); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	k := string(req.Msg.GetKey())
	cur, ok := f.kvs[k]
	if req.Msg.IfModRevision != nil && req.Msg.GetIfModRevision() != cur.GetModRevision() {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("mod revision mismatch"))
	}
	f.rev++
	delete(f.kvs, k)
	resp := &kvdv1.DeleteResponse{Revision: f.rev}
	if ok {
		resp.Deleted = 1
	}
	return connect.NewResponse(resp), nil
}

// Range serves pages of at most 2 keys, to exercise page following.
func (f *fakeKVD) Range(ctx context.Context, req *connect.Request[kvdv1.RangeRequest]) (*connect.Response[kvdv1.RangeResponse], error) {
	if err := f.enter(ctx, "Range"); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	f.consistency = req.Msg.GetConsistency()
	var keys []string
	for k := range f.kvs {
		if strings.HasPrefix(k, string(req.Msg.GetPrefix())) && k > string(req.Msg.GetPageToken()) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	limit := 2
	if l := int(req.Msg.GetLimit()); l > 0 && l < limit {
		limit = l
	}
	resp := &kvdv1.RangeResponse{Revision: f.rev}
	if len(keys) > limit {
		keys = keys[:limit]
		resp.More, resp.NextPageToken = true, []byte(keys[limit-1])
	}
	for _, k := range keys {
		kv := f.kvs[k]
		if req.Msg.GetKeysOnly() {
			kv = &kvdv1.KeyValue{Key: kv.GetKey(), CreateRevision: kv.GetCreateRevision(),
				ModRevision: kv.GetModRevision(), Version: kv.GetVersion()}
		}
		resp.Kvs = append(resp.Kvs, kv)
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeKVD) Members(ctx context.Context, _ *connect.Request[kvdv1.MembersRequest]) (*connect.Response[kvdv1.MembersResponse], error) {
	if err := f.enter(ctx, "Members"); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	resp := &kvdv1.MembersResponse{LeaderId: 1}
	for _, m := range f.members {
		resp.Members = append(resp.Members, proto.Clone(m).(*kvdv1.Member))
	}
	return connect.NewResponse(resp), nil
}

// setSecret makes membership changes need the join secret s, like kvd.
func (f *fakeKVD) setSecret(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.secret = s
}

// roles returns each member's role by ID.
func (f *fakeKVD) roles() map[uint64]kvdv1.Role {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[uint64]kvdv1.Role{}
	for _, m := range f.members {
		out[m.GetId()] = m.GetRole()
	}
	return out
}

// change runs a membership change on member id the way kvd answers: secret
// first, then NotFound for a non-member. f is locked.
func (f *fakeKVD) change(h http.Header, id uint64, fn func(i int) error) error {
	if f.secret != "" && h.Get("Kvd-Join-Secret") != f.secret {
		return connect.NewError(connect.CodePermissionDenied,
			errors.New("wrong or missing join secret: pass the cluster's --join-secret (KVD_JOIN_SECRET / KVCTL_JOIN_SECRET)"))
	}
	for i, m := range f.members {
		if m.GetId() == id {
			return fn(i)
		}
	}
	return connect.NewError(connect.CodeNotFound,
		fmt.Errorf("membership: not a member: replica %d is not a member (see kvctl members)", id))
}

func (f *fakeKVD) Promote(ctx context.Context, req *connect.Request[kvdv1.PromoteRequest]) (*connect.Response[kvdv1.PromoteResponse], error) {
	if err := f.enter(ctx, "Promote"); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	err := f.change(req.Header(), req.Msg.GetId(), func(i int) error {
		f.members[i].Role = kvdv1.Role_ROLE_VOTER
		return nil
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&kvdv1.PromoteResponse{}), nil
}

func (f *fakeKVD) Remove(ctx context.Context, req *connect.Request[kvdv1.RemoveRequest]) (*connect.Response[kvdv1.RemoveResponse], error) {
	if err := f.enter(ctx, "Remove"); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	err := f.change(req.Header(), req.Msg.GetId(), func(i int) error {
		if f.members[i].GetRole() == kvdv1.Role_ROLE_VOTER {
			return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
				"membership: change would break the quorum: without voter %d, 1 of 2 voters would be reachable (quorum 2)",
				req.Msg.GetId()))
		}
		f.members = slices.Delete(f.members, i, i+1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&kvdv1.RemoveResponse{}), nil
}

func (f *fakeKVD) Status(ctx context.Context, _ *connect.Request[kvdv1.StatusRequest]) (*connect.Response[kvdv1.StatusResponse], error) {
	if err := f.enter(ctx, "Status"); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	st := proto.Clone(f.status).(*kvdv1.StatusResponse)
	st.ApiAddr = f.addr
	return connect.NewResponse(st), nil
}

// runKvctl runs kvctl with args and stdin and returns its output and exit code.
func runKvctl(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := newApp(&out, &errOut)
	app.Reader = strings.NewReader(stdin)
	err := app.Run(permuteArgs(app, append([]string{"kvctl"}, args...)))
	code = exitCode(err)
	if (err == nil) != (errOut.Len() == 0) {
		t.Errorf("kvctl %v: err %v but stderr %q: an error must be reported on stderr, and only then",
			args, err, errOut.String())
	}
	return out.String(), errOut.String(), code
}
