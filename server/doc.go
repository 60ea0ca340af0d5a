// Package server is kvd as an embeddable server (in the manner of etcd's
// server/embed): New(cfg), Start(ctx), Stop(ctx). It wires a node, the
// Connect API, /healthz, /readyz and /metrics on one listener, so that
// tests can run several servers in one process.
//
// The listener speaks h2c and HTTP/1.1, or with Config.Node.TLS only TLS
// (HTTP/2 by ALPN, HTTP/1.1). A router (sniff.go) tells each connection
// apart: gRPC clients (application/grpc, +proto) reach grpc-go's server,
// everything else net/http and connect-go; both serve the same handlers. New loads and checks the certificate files
// and refuses a node that would leave membership open beyond loopback
// (CheckMembershipGuard). The API certificate is re-read when its files
// change (looked at no more than once a second) and, with ReloadOnSIGHUP,
// on SIGHUP. Every goroutine the server starts (the router, the servers, the
// watcher of the node's removal, the SIGHUP reloader, and with
// Config.Registry the registry loop of registry.go, which keeps this node's
// entry current from the moment the port is bound) is the server's: Stop
// ends and waits for them (TestStopWaitsForEveryGoroutine).
package server
