package membership

import (
	"os"
	"syscall"
)

// CrashEnv names the crash point at which the process kills itself with
// SIGKILL. The e2e tests use it to crash a real kvd at an exact step of
// join → catch-up → promote → snapshot; unset, it does nothing.
const CrashEnv = "KVD_CRASH_AT"

// Crash points, in the order a joiner passes them.
const (
	CrashAfterIdentity = "after-identity" // identity saved, replica not started (nor joined)
	CrashAfterJoin     = "after-join"     // Join returned, replica not started
	CrashBeforeReady   = "before-ready"   // ReadIndex done, not yet marked ready
	CrashBeforePromote = "before-promote" // caught up, about to promote
	CrashAfterPromote  = "after-promote"  // promoted, before the snapshot
	CrashAfterSnapshot = "after-snapshot" // snapshot after the role change taken
)

// CrashPoint kills the process if CrashEnv names point.
func CrashPoint(point string) {
	if os.Getenv(CrashEnv) == point {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}
