package server

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind once its
// servers are stopped (HTTP serving, the removal watcher, the SIGHUP
// reloader, the registry loop, the node and Dragonboat under it).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
