// Package rpc serves kvd's Connect API (kvd.v1.KV and kvd.v1.Cluster) on top
// of a node: request validation and limits, the mapping of every internal
// error to a Connect code (errors.go, the only such table), gRPC health and
// reflection, and RPC metrics. The same handlers serve grpc-go's server
// (grpc.go): thin adapters, with the same guard, limits and metrics.
//
// Handlers depend on the small Store and ClusterView interfaces, which
// *node.Node satisfies; package server wires them to an HTTP server.
package rpc
