package rpc

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"net/http"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// SecretHeader carries the cluster join secret.
const SecretHeader = "Kvd-Join-Secret"

// guarded are the procedures that change membership (and Snapshot, and
// Maintenance/Backup, which copies out all the data): without
// the secret or a verified client certificate (see newGuard) they get
// PermissionDenied and change nothing.
var guarded = map[string]bool{
	kvdv1connect.ClusterJoinProcedure:           true,
	kvdv1connect.ClusterPromoteProcedure:        true,
	kvdv1connect.ClusterRemoveProcedure:         true,
	kvdv1connect.ClusterTransferLeaderProcedure: true,
	kvdv1connect.ClusterSnapshotProcedure:       true,
	kvdv1connect.MaintenanceBackupProcedure:     true,
}

type guard struct {
	secret      []byte
	clientCerts bool
}

// newGuard guards membership changes: a guarded call passes with the
// secret (when one is set) or, with clientCertAuth, over a connection whose
// client certificate was verified against the cluster CA (withClientCert
// marks those). With neither set everything passes: kvd refuses to start
// like that on a non-loopback address (server.CheckMembershipGuard).
func newGuard(secret string, clientCertAuth bool) *guard {
	return &guard{secret: []byte(secret), clientCerts: clientCertAuth}
}

// check decides one call of procedure that carries secret (its
// SecretHeader, from HTTP headers or gRPC metadata alike): nil, or the
// refusal. Both protocols' interceptors ask it.
func (g *guard) check(ctx context.Context, procedure, secret string) error {
	if guarded[procedure] && !g.allowed(ctx, secret) {
		return g.refusal()
	}
	return nil
}

func (g *guard) allowed(ctx context.Context, secret string) bool {
	if len(g.secret) == 0 && !g.clientCerts {
		return true
	}
	// Constant time; the secret is never logged or echoed.
	if len(g.secret) > 0 && subtle.ConstantTimeCompare([]byte(secret), g.secret) == 1 {
		return true
	}
	return g.clientCerts && verifiedClient(ctx)
}

func (g *guard) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := g.check(ctx, req.Spec().Procedure, req.Header().Get(SecretHeader)); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (g *guard) refusal() error {
	if g.clientCerts {
		return connect.NewError(connect.CodePermissionDenied,
			errors.New("this call changes membership or copies the data: it needs a client certificate signed by the cluster CA (kvctl --cert/--key) or the cluster's join secret (KVCTL_JOIN_SECRET)"))
	}
	return connect.NewError(connect.CodePermissionDenied,
		errors.New("wrong or missing join secret: pass the cluster's --join-secret (KVD_JOIN_SECRET / KVCTL_JOIN_SECRET)"))
}

func (g *guard) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (g *guard) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := g.check(ctx, conn.Spec().Procedure, conn.RequestHeader().Get(SecretHeader)); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

type clientCertKey struct{}

// withClientCert marks requests that came over TLS with a client
// certificate verified against the server's CA (tls.Config.ClientCAs).
func withClientCert(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if verifiedTLS(r.TLS) {
			r = r.WithContext(context.WithValue(r.Context(), clientCertKey{}, true))
		}
		h.ServeHTTP(w, r)
	})
}

// verifiedTLS: a client certificate was verified against the cluster CA.
func verifiedTLS(st *tls.ConnectionState) bool {
	return st != nil && len(st.VerifiedChains) > 0
}

func verifiedClient(ctx context.Context) bool {
	v, _ := ctx.Value(clientCertKey{}).(bool)
	return v
}

// secretSender adds the secret to outgoing calls.
type secretSender string

func (s secretSender) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if s != "" {
			req.Header().Set(SecretHeader, string(s))
		}
		return next(ctx, req)
	}
}

func (s secretSender) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (s secretSender) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// clientCertRequired answers a client without a verified certificate
// under --client-cert-auth, over either protocol.
const clientCertRequired = "this node requires a client certificate signed by the cluster CA (--client-cert-auth): pass one, e.g. kvctl --cert NAME.crt --key NAME.key"

// RequireClientCert (--client-cert-auth) answers every request that came
// without a client certificate verified against the cluster CA with
// Unauthenticated (HTTP 401 outside RPCs) and a message saying what to
// pass. The TLS handshake itself only verifies a certificate when one is
// given: a client refused there learns little ("could not be
// established"), while this answer names the fix.
func RequireClientCert(h http.Handler) http.Handler {
	errw := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if verifiedTLS(r.TLS) {
			h.ServeHTTP(w, r)
			return
		}
		if errw.IsSupported(r) {
			_ = errw.Write(w, r, connect.NewError(connect.CodeUnauthenticated, errors.New(clientCertRequired)))
			return
		}
		http.Error(w, clientCertRequired, http.StatusUnauthorized)
	})
}
