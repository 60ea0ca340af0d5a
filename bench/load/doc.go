// Package load is the measuring core of kvd's load generator: a closed-loop
// runner, key generation, exact latency percentiles, per-second series, and
// the text, JSON and HTML reports. It depends only on the standard library
// and knows nothing about kvd: the caller supplies a Target (one per worker
// or shared), so the same loop drives kvd (bench/), an in-process no-op RPC
// server (bench ceiling) and etcd (bench/etcd), and their figures compare.
//
// # Usage
//
//	w := load.DefaultWorkload()
//	w.Clients, w.Duration = 64, 10*time.Second
//	if err := w.Validate(); err != nil {
//		return err // names the flag and the value
//	}
//	res, err := load.Run(ctx, w, []load.Target{t}, os.Stderr)
//	load.WriteSummary(os.Stdout, res) // or load.WriteJSON
//
// # Lifecycle
//
// Run starts w.Clients workers, each calling its Target back to back
// (closed loop: one call in flight per worker). It first writes every key
// of the keyspace once if w.Preload is set, then runs w.Warmup unmeasured,
// then measures for w.Duration or until w.Ops operations were issued. It
// returns when every worker has finished its last call; canceling ctx
// stops the workers early and Run returns what was measured so far.
//
// # Measurement
//
// Every measured call's latency is kept (8 bytes per call, allocated in
// chunks of 16,384), so percentiles are exact (nearest rank), not
// estimated: about 10 MB per minute at 20,000 ops/s. Errors are counted and
// their latencies left out; a Get of a missing key counts as a success
// (Result.NotFound).
package load
