package rpc

import (
	"context"
	"crypto/subtle"
	"errors"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// SecretHeader carries the cluster join secret.
const SecretHeader = "Kvd-Join-Secret"

// guarded are the procedures that change membership: without the right
// secret (when one is set) they get PermissionDenied and change nothing.
var guarded = map[string]bool{
	kvdv1connect.ClusterJoinProcedure:           true,
	kvdv1connect.ClusterPromoteProcedure:        true,
	kvdv1connect.ClusterRemoveProcedure:         true,
	kvdv1connect.ClusterTransferLeaderProcedure: true,
	kvdv1connect.ClusterSnapshotProcedure:       true,
}

type secretChecker struct{ secret []byte }

// newSecretChecker guards membership changes; an empty secret lets all through.
func newSecretChecker(secret string) connect.Interceptor {
	return &secretChecker{secret: []byte(secret)}
}

func (s *secretChecker) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if len(s.secret) > 0 && guarded[req.Spec().Procedure] {
			got := []byte(req.Header().Get(SecretHeader))
			// Constant time; the secret is never logged or echoed.
			if subtle.ConstantTimeCompare(got, s.secret) != 1 {
				return nil, connect.NewError(connect.CodePermissionDenied,
					errors.New("wrong or missing join secret: pass the cluster's --join-secret (KVD_JOIN_SECRET / KVCTL_JOIN_SECRET)"))
			}
		}
		return next(ctx, req)
	}
}

func (s *secretChecker) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (s *secretChecker) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
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
