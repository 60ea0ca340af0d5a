//go:build race

package e2e

// raceEnabled: the test process runs with the race detector, which slows its
// own decoding of large responses about tenfold (the kvd binaries it starts
// do not have it); large-data tests scale down.
const raceEnabled = true
