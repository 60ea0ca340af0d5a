// Package server is kvd as an embeddable server (in the manner of etcd's
// server/embed): New(cfg), Start(ctx), Stop(ctx). It wires a node, the
// Connect API, /healthz, /readyz and /metrics on one h2c listener, so that
// tests can run several servers in one process.
package server
