package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kvd-project/kvd/bench/load"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// protocolGRPCGo drives kvd as a plain gRPC application would: grpc-go's
// own transport and the generated stubs (kv_grpc.pb.go), one
// grpc.ClientConn (one HTTP/2 connection) per node, as etcd's clientv3
// does. No retries, no failover: a failed call is an error of the run.
const protocolGRPCGo = "grpc-go"

// newGRPCTargets dials one grpc.ClientConn per endpoint (with Spread; else
// one to the first endpoint), plaintext h2c or, with o.TLS or https://
// endpoints, TLS. Workers are spread over them round-robin by load.Run.
func newGRPCTargets(o dialOptions) (targets []load.Target, closeAll func(), err error) {
	var conns []*grpc.ClientConn
	closeAll = func() {
		for _, cc := range conns {
			cc.Close()
		}
	}
	creds := insecure.NewCredentials()
	if o.tls() {
		// o.TLS nil with https:// endpoints: the system's roots.
		creds = credentials.NewTLS(o.TLS)
	}
	eps := o.Endpoints
	if !o.Spread {
		eps = eps[:1]
	}
	for _, ep := range eps {
		addr := ep
		if _, rest, ok := strings.Cut(ep, "://"); ok {
			addr = strings.TrimSuffix(rest, "/")
		}
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("grpc-go client for %s: %w", ep, err)
		}
		conns = append(conns, cc)
		t := &grpcTarget{kv: kvdv1.NewKVClient(cc), timeout: o.Timeout, consistency: kvdv1.Consistency_CONSISTENCY_LINEARIZABLE}
		if o.Consistency == "serializable" {
			t.consistency = kvdv1.Consistency_CONSISTENCY_SERIALIZABLE
		}
		targets = append(targets, t)
	}
	return targets, closeAll, nil
}

// grpcTarget runs the workload through the grpc-go stubs, each call under
// its own timeout.
type grpcTarget struct {
	kv          kvdv1.KVClient
	timeout     time.Duration
	consistency kvdv1.Consistency
}

func (t *grpcTarget) Put(ctx context.Context, key, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	_, err := t.kv.Put(ctx, &kvdv1.PutRequest{Key: key, Value: value})
	return err
}

func (t *grpcTarget) Get(ctx context.Context, key []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	_, err := t.kv.Get(ctx, &kvdv1.GetRequest{Key: key, Consistency: t.consistency})
	if status.Code(err) == codes.NotFound {
		return false, nil
	}
	return err == nil, err
}

// errGRPCGoOnly lists what the grpc-go client does not do.
var errGRPCGoOnly = errors.New("--protocol grpc-go is plain stubs over h2c (or TLS): " +
	"not with --transport http1, --prefer-leader, --any-node-writes or --watchers")
