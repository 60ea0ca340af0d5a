// Package client is the Go client for kvd, a replicated key-value store.
//
// # Usage
//
//	c, err := client.New(client.Config{
//		Endpoints: []string{"10.0.0.1:7070", "10.0.0.2:7070", "10.0.0.3:7070"},
//	})
//	if err != nil {
//		return err // a bad Config: the message names the value
//	}
//	defer c.Close()
//
//	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
//	defer cancel()
//	put, err := c.Put(ctx, []byte("greeting"), []byte("hello"))
//	kv, err := c.Get(ctx, []byte("greeting"))
//	switch {
//	case errors.Is(err, client.ErrNotFound):
//		// the key does not exist
//	case err != nil:
//		return err
//	}
//	// Compare-and-swap: write only if nobody wrote since we read.
//	_, err = c.Put(ctx, kv.Key, []byte("hi"), client.IfModRevision(kv.ModRevision))
//	if errors.Is(err, client.ErrCompareFailed) {
//		// re-read and try again
//	}
//	kvs, err := c.Scan(ctx, []byte("user/"), 100)
//
// # Lifecycle
//
// New validates the Config and builds the transport; it does not connect.
// A Client is safe for concurrent use and should be shared. Close releases
// idle connections; it is idempotent, and calls after it fail with ErrClosed.
//
// # Endpoints and failover
//
// Any kvd node accepts any call. The client sends every call to its current
// endpoint. When an attempt fails because the endpoint cannot be reached or
// answered Unavailable, the client moves to the next endpoint and retries
// after an exponential backoff with jitter (Config.BackoffBase, BackoffMax),
// at most Config.MaxAttempts attempts in all and never past ctx's deadline.
// Each attempt is bounded by Config.RequestTimeout; the whole call by ctx.
//
// # Retries and writes
//
// Reads (Get, Range, Scan, Members, Status) are also retried after an
// attempt times out or its connection breaks. Writes (Put, Delete, Txn) are
// retried only when the request provably was not applied: the dial failed,
// or the server answered Unavailable (kvd promises to send Unavailable only
// for writes it did not propose). A write whose attempt timed out, whose
// connection broke after sending, or that got Unknown or Internal may or may
// not have been applied; the client returns an error for which
// OutcomeUnknown reports true and does not retry, because a retry is not the
// same request: a retried Put with IfModRevision would compare against the
// revision its own first attempt wrote and report a false ErrCompareFailed.
// The application decides: typically it reads the key and compares.
//
// # TLS
//
// A cluster started with kvd --cert-file serves only TLS. Give the client
// the cluster's CA (and, when kvd has --client-cert-auth, a certificate
// issued by it, e.g. with kvctl certs issue):
//
//	tlsCfg, err := client.TLSFromFiles("certs/ca.crt", "certs/app.crt", "certs/app.key")
//	if err != nil {
//		return err // names the file and what is wrong with it
//	}
//	c, err := client.New(client.Config{Endpoints: eps, TLS: tlsCfg})
//
// With TLS set, bare host:port endpoints mean https://. Without it,
// https:// endpoints verify the nodes against the system's roots. All
// endpoints must use one scheme: New refuses a mix of http:// and https://.
// Every protocol, Stream and PreferLeader work over TLS; gRPC and Stream
// negotiate HTTP/2 by ALPN.
//
// TLS settings that do not fit the node's fail the call at its first
// attempt with ErrTLS and a message that says what to pass: the node's
// certificate is not signed by a CA in Config.TLS (--cacert) or not for
// the endpoint's name; the node requires a client certificate (--cert,
// --key) or refused the one given; the node serves TLS and the endpoint is
// http://, or the reverse. Such a call is not retried on the other
// endpoints: every attempt would meet the same settings, and retrying
// would only spend the retry budget and end in an "unavailable" that hides
// the cause. The request never reached kvd, so a write's outcome is known
// (not applied; OutcomeUnknown is false), IsTemporary is false, and the
// client moves to the next endpoint for the next call, in case only one
// node is set up wrong. connect.CodeOf reports Unavailable, as grpc-go
// does for a failed handshake; test errors.Is(err, client.ErrTLS). When a
// call fails without an answer (a plaintext request to a TLS node gets a
// bare "400 Bad Request", an h2c preface a closed connection), the client
// dials that node once and offers a TLS handshake to tell the mismatch
// from a broken connection.
//
// # Membership
//
// Members and Status read the membership. Promote, Remove and
// TransferLeader change it, and Snapshot makes the node of CurrentEndpoint
// (and only it: Snapshot does not fail over) take a local snapshot. These
// four need the cluster's join secret when it has one:
//
//	c, err := client.New(client.Config{Endpoints: eps, JoinSecret: secret})
//	err = c.Promote(ctx, 4)
//	switch {
//	case errors.Is(err, client.ErrNotMember): // no member 4
//	case errors.Is(err, client.ErrRefused): // e.g. it would break the quorum
//	case errors.Is(err, client.ErrPermissionDenied): // wrong JoinSecret
//	}
//
// JoinSecret is sent with every call, and never logged or put in an error.
// Membership changes are retried like writes: only when provably not
// applied (a dial failure or Unavailable). After an unknown outcome, list the
// Members before trying again; Aborted means a concurrent change won and
// nothing was applied.
//
// # Errors
//
// Every call returns an *Error that wraps the last attempt's
// *connect.Error, so both errors.Is(err, client.ErrNotFound) and
// connect.CodeOf(err) work. A code means different things on different
// calls: FailedPrecondition is ErrCompareFailed on Put, Delete and Txn but
// ErrRefused on a membership change; NotFound is ErrNotFound on Get but
// ErrNotMember on a Cluster call. The message names the endpoints tried and
// what to do next. IsTemporary reports errors worth retrying later.
// ErrTLS marks TLS settings that do not fit the node's (see TLS).
//
// # Protocols
//
// ProtocolConnect (default) and ProtocolGRPC go over HTTP/2: cleartext
// (h2c) for http:// endpoints, by ALPN over TLS. ProtocolGRPCWeb uses
// HTTP/1.1 and is always unary (it cannot stream both ways). Raw gives the
// generated Connect clients of any endpoint, for calls to one particular
// node.
//
// # The stream (the default) and unary calls
//
// Put, Get, Delete and Txn travel over one bidirectional stream per
// endpoint (kvd.v1.KV/Stream, HTTP/2), opened by the first call there. Calls
// made while earlier ones are in flight leave together in one message, and
// the server puts their writes into shared Raft entries, so the same cores
// carry about twice the puts of unary calls (bench/README.md), and a lone
// call on an open stream costs what a unary one does. Opening the stream
// costs the first call about 1 ms more, so a program that makes one call
// and exits (kvctl) sets Unary. Each call keeps its own result, error
// and retry rules; if the stream breaks, calls already sent fail (a write's
// outcome is then unknown), calls not yet sent are retried like a failed
// dial, and the next call opens a new stream. A node bounds the bytes of
// answers in flight per stream (16 MiB of large values); Gets of large
// values beyond that in one message come back ResourceExhausted and are
// read again with a unary Get, so callers see only their value.
// Writes go to the leader by default (found with a Status call to every
// endpoint by the first write, again after a failure there and every 5 s),
// sparing them a follower's forwarding hop; reads stay on the current
// endpoint. AnyNodeWrites keeps writes there too; PreferLeader sends every
// call to the leader:
//
//	c, err := client.New(client.Config{Endpoints: eps, PreferLeader: true})
//
// Unary sends each call as a request of its own instead; for
// ProtocolConnect over a pool of keep-alive HTTP/1.1 connections, over TLS
// too, for a path without HTTP/2 (an HTTP/1.1 proxy):
//
//	c, err := client.New(client.Config{Endpoints: eps, Unary: true})
package client
