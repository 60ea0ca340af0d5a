package client

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind (a
// stream's sender, a connection's reader).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
