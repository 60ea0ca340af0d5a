// Package server is kvd as an embeddable server (in the manner of etcd's
// server/embed): New(cfg), Start(ctx), Stop(ctx). It wires a node, the
// Connect API, /healthz, /readyz and /metrics on one listener, so that
// tests can run several servers in one process.
//
// The listener speaks h2c and HTTP/1.1, or with Config.Node.TLS only TLS
// (HTTP/2 by ALPN, HTTP/1.1). New loads and checks the certificate files
// and refuses a node that would leave membership open beyond loopback
// (CheckMembershipGuard). The API certificate is re-read when its files
// change (looked at no more than once a second) and, with ReloadOnSIGHUP,
// on SIGHUP. Every goroutine the server starts (the HTTP server, the
// watcher of the node's removal, the SIGHUP reloader) is the server's:
// Stop ends and waits for them (TestStopWaitsForEveryGoroutine).
package server
