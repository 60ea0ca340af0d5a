package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/kvd-project/kvd/membership"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// GRPC serves the API with grpc-go's own server, to the connections the
// API port tells apart as gRPC (server/sniff.go). It answers from the
// moment the port is bound: Bootstrap at once, everything else Unavailable
// until Serve hands it the running node's API, as the HTTP side answers
// 503 (server/http.go). Its services are thin adapters over the Connect
// handlers; its interceptors ask the same guard and count into the same
// metrics as Mount's.
type GRPC struct {
	srv            *grpc.Server
	api            atomic.Pointer[API]
	clientCertAuth bool
}

// Timeouts the net/http side has as server settings (server/http.go).
const (
	// grpcUnaryTimeout bounds a unary call that came without a deadline,
	// as net/http's WriteTimeout bounds one over Connect.
	grpcUnaryTimeout = 60 * time.Second
	// grpcIdleTimeout closes a connection without calls, as IdleTimeout.
	grpcIdleTimeout = 2 * time.Minute
)

// startingMessage: what a call gets before the node runs.
const startingMessage = "starting: joining the cluster or opening the data dir"

// NewGRPC builds the grpc-go server; formation answers Bootstrap/Identify
// before the node runs. limits bound a request message as Mount's do;
// clientCertAuth refuses calls without a verified client certificate.
func NewGRPC(formation *membership.Formation, limits Limits, clientCertAuth bool) *GRPC {
	g := &GRPC{clientCertAuth: clientCertAuth}
	g.srv = grpc.NewServer(
		grpc.Creds(handshakenCreds{}),
		grpc.MaxRecvMsgSize(limits.maxMessageBytes()),
		grpc.MaxConcurrentStreams(250), // net/http's HTTP/2 default
		grpc.MaxHeaderListSize(64<<10), // the HTTP server's MaxHeaderBytes
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: grpcIdleTimeout}),
		// net/http answers every ping: allow clients' keep-alives.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.WaitForHandlers(true), // Stop waits for them: no goroutine outlives the server
		grpc.ChainUnaryInterceptor(g.unary),
		grpc.ChainStreamInterceptor(g.stream),
	)
	kvdv1.RegisterBootstrapServer(g.srv, grpcBootstrap{b: &bootstrapServer{f: formation}})
	kvdv1.RegisterKVServer(g.srv, grpcKV{g: g})
	kvdv1.RegisterClusterServer(g.srv, grpcCluster{g: g})
	kvdv1.RegisterMaintenanceServer(g.srv, grpcMaintenance{g: g})
	healthpb.RegisterHealthServer(g.srv, grpcHealth{g: g})
	reflection.Register(g.srv)
	return g
}

// Run answers with the running node's API from now on.
func (g *GRPC) Run(a *API) { g.api.Store(a) }

// Serve serves the connections ln yields until Stop or GracefulStop; then
// it returns nil or grpc.ErrServerStopped.
func (g *GRPC) Serve(ln net.Listener) error { return g.srv.Serve(ln) }

// GracefulStop stops taking calls and waits for those in flight.
func (g *GRPC) GracefulStop() { g.srv.GracefulStop() }

// Stop cuts the calls in flight and waits for their handlers.
func (g *GRPC) Stop() { g.srv.Stop() }

// kvdService: the procedure is one of kvd's own services behind the guard
// and metrics (as Mount's handler options), not Bootstrap, health or
// reflection.
func kvdService(procedure string) bool {
	return strings.HasPrefix(procedure, "/kvd.v1.") && !strings.HasPrefix(procedure, "/kvd.v1.Bootstrap/")
}

// admit runs the checks every call passes before its handler: the client
// certificate (--client-cert-auth, as RequireClientCert), the stage (only
// Bootstrap before the node runs), the guard. It returns the API and ctx
// marked with a verified client certificate.
func (g *GRPC) admit(ctx context.Context, procedure string) (context.Context, *API, error) {
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && verifiedTLS(&info.State) {
			ctx = context.WithValue(ctx, clientCertKey{}, true)
		}
	}
	if g.clientCertAuth && !verifiedClient(ctx) {
		return ctx, nil, status.Error(codes.Unauthenticated, clientCertRequired)
	}
	if strings.HasPrefix(procedure, "/kvd.v1.Bootstrap/") {
		return ctx, nil, nil
	}
	a := g.api.Load()
	if a == nil {
		return ctx, nil, status.Error(codes.Unavailable, startingMessage)
	}
	return ctx, a, nil
}

// secretOf is the join secret in the call's metadata.
func secretOf(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, strings.ToLower(SecretHeader)); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (g *GRPC) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, a, err := g.admit(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if a == nil || !kvdService(info.FullMethod) {
		return handler(ctx, req)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, grpcUnaryTimeout)
		defer cancel()
	}
	start := time.Now()
	var resp any
	if err = a.guard.check(ctx, info.FullMethod, secretOf(ctx)); err == nil {
		resp, err = handler(ctx, req)
	}
	err = grpcError(err)
	a.metrics.observeUnary(info.FullMethod, start, err)
	return resp, err
}

// stream serves a streaming call: every one of kvd's is long-lived (KV
// Stream and Watch, Cluster WatchMembers, Maintenance Backup), so each ends
// when Options.Stopping does, as longStreams ends them over Connect.
func (g *GRPC) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, a, err := g.admit(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if a == nil || !kvdService(info.FullMethod) {
		return handler(srv, ctxStream{ss, ctx})
	}
	if a.opts.Stopping != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(a.opts.Stopping, cancel)()
	}
	if err = a.guard.check(ctx, info.FullMethod, secretOf(ctx)); err == nil {
		err = handler(srv, ctxStream{ss, ctx})
	}
	err = grpcError(err)
	a.metrics.observeStreamEnd(info.FullMethod, err)
	return err
}

// ctxStream is a stream with the context the interceptor made.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

// grpcError is err as a grpc-go status: a Connect error keeps its code
// (the numbers are gRPC's), message and details.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		if _, ok := status.FromError(err); ok {
			return err // from grpc-go itself, e.g. a failed Send
		}
		return status.FromContextError(err).Err() // Unknown unless a context error
	}
	st := &spb.Status{Code: int32(ce.Code()), Message: ce.Message()}
	for _, d := range ce.Details() {
		st.Details = append(st.Details, &anypb.Any{TypeUrl: "type.googleapis.com/" + d.Type(), Value: d.Bytes()})
	}
	return status.ErrorProto(st)
}

// unary calls a Connect handler with req and returns its answer as
// grpc-go wants it.
func unary[Req, Res any](ctx context.Context, req *Req, h func(context.Context, *connect.Request[Req]) (*connect.Response[Res], error)) (*Res, error) {
	resp, err := h(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, grpcError(err)
	}
	return resp.Msg, nil
}

// sender and receiver are what the streaming handlers need of a stream;
// connect-go's and grpc-go's streams both have them (grpc-go's Recv under
// the name Receive: grpcReceiver).
type sender[T any] interface{ Send(*T) error }

type receiver[T any] interface{ Receive() (*T, error) }

type grpcReceiver[T any] struct {
	s interface{ Recv() (*T, error) }
}

func (r grpcReceiver[T]) Receive() (*T, error) { return r.s.Recv() }

// The services: each method hands its call to the Connect handler's code.
// admit made sure the API is there.

type grpcKV struct {
	kvdv1.UnimplementedKVServer
	g *GRPC
}

func (s grpcKV) api() *API { return s.g.api.Load() }

func (s grpcKV) Put(ctx context.Context, req *kvdv1.PutRequest) (*kvdv1.PutResponse, error) {
	return unary(ctx, req, s.api().kv.Put)
}

func (s grpcKV) Get(ctx context.Context, req *kvdv1.GetRequest) (*kvdv1.GetResponse, error) {
	return unary(ctx, req, s.api().kv.Get)
}

func (s grpcKV) Delete(ctx context.Context, req *kvdv1.DeleteRequest) (*kvdv1.DeleteResponse, error) {
	return unary(ctx, req, s.api().kv.Delete)
}

func (s grpcKV) Range(ctx context.Context, req *kvdv1.RangeRequest) (*kvdv1.RangeResponse, error) {
	return unary(ctx, req, s.api().kv.Range)
}

func (s grpcKV) Txn(ctx context.Context, req *kvdv1.TxnRequest) (*kvdv1.TxnResponse, error) {
	return unary(ctx, req, s.api().kv.Txn)
}

func (s grpcKV) Stream(st grpc.BidiStreamingServer[kvdv1.StreamRequest, kvdv1.StreamResponse]) error {
	return grpcError(s.api().kv.stream(st.Context(), grpcReceiver[kvdv1.StreamRequest]{st}, st))
}

func (s grpcKV) Watch(req *kvdv1.WatchRequest, st grpc.ServerStreamingServer[kvdv1.WatchResponse]) error {
	return grpcError(s.api().kv.watch(st.Context(), req, st))
}

type grpcCluster struct {
	kvdv1.UnimplementedClusterServer
	g *GRPC
}

func (s grpcCluster) api() *API { return s.g.api.Load() }

func (s grpcCluster) Members(ctx context.Context, req *kvdv1.MembersRequest) (*kvdv1.MembersResponse, error) {
	return unary(ctx, req, s.api().cluster.Members)
}

func (s grpcCluster) Status(ctx context.Context, req *kvdv1.StatusRequest) (*kvdv1.StatusResponse, error) {
	return unary(ctx, req, s.api().cluster.Status)
}

func (s grpcCluster) Join(ctx context.Context, req *kvdv1.JoinRequest) (*kvdv1.JoinResponse, error) {
	return unary(ctx, req, s.api().cluster.Join)
}

func (s grpcCluster) Promote(ctx context.Context, req *kvdv1.PromoteRequest) (*kvdv1.PromoteResponse, error) {
	return unary(ctx, req, s.api().cluster.Promote)
}

func (s grpcCluster) Remove(ctx context.Context, req *kvdv1.RemoveRequest) (*kvdv1.RemoveResponse, error) {
	return unary(ctx, req, s.api().cluster.Remove)
}

func (s grpcCluster) TransferLeader(ctx context.Context, req *kvdv1.TransferLeaderRequest) (*kvdv1.TransferLeaderResponse, error) {
	return unary(ctx, req, s.api().cluster.TransferLeader)
}

func (s grpcCluster) Snapshot(ctx context.Context, req *kvdv1.SnapshotRequest) (*kvdv1.SnapshotResponse, error) {
	return unary(ctx, req, s.api().cluster.Snapshot)
}

func (s grpcCluster) WatchMembers(_ *kvdv1.WatchMembersRequest, st grpc.ServerStreamingServer[kvdv1.WatchMembersResponse]) error {
	return grpcError(s.api().cluster.watchMembers(st.Context(), st))
}

type grpcMaintenance struct {
	kvdv1.UnimplementedMaintenanceServer
	g *GRPC
}

func (s grpcMaintenance) Backup(req *kvdv1.BackupRequest, st grpc.ServerStreamingServer[kvdv1.BackupResponse]) error {
	b := s.g.api.Load().backup
	if b == nil {
		return status.Error(codes.Unimplemented, "backup: this node cannot export its data")
	}
	return grpcError(b.backup(st.Context(), req, st))
}

type grpcBootstrap struct {
	kvdv1.UnimplementedBootstrapServer
	b *bootstrapServer
}

func (s grpcBootstrap) Identify(ctx context.Context, req *kvdv1.IdentifyRequest) (*kvdv1.IdentifyResponse, error) {
	return unary(ctx, req, s.b.Identify)
}

// grpcHealth answers grpc.health.v1 from the same checker as Mount's
// (Watch and List stay unimplemented, as connect's grpchealth has them).
type grpcHealth struct {
	healthpb.UnimplementedHealthServer
	g *GRPC
}

func (h grpcHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	r, err := h.g.api.Load().health.Check(ctx, &grpchealth.CheckRequest{Service: req.Service})
	if err != nil {
		return nil, grpcError(err)
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_ServingStatus(r.Status)}, nil
}

// handshakenCreds are the grpc-go server's transport credentials: the API
// listener did the TLS handshake (if any) before it told gRPC apart, so
// the connection arrives decrypted; its TLS state, when it has one,
// becomes the peer's AuthInfo (credentials.TLSInfo), where admit finds
// the verified client certificate.
type handshakenCreds struct{}

func (handshakenCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("rpc: handshakenCreds serve only")
}

func (handshakenCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if s, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return c, credentials.TLSInfo{State: s.ConnectionState(),
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
	}
	return c, plainInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
}

func (handshakenCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "kvd-sniffed"}
}

func (c handshakenCreds) Clone() credentials.TransportCredentials { return c }

func (handshakenCreds) OverrideServerName(string) error { return nil }

type plainInfo struct{ credentials.CommonAuthInfo }

func (plainInfo) AuthType() string { return "insecure" }
