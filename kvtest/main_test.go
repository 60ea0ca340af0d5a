package kvtest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if its clusters leave a goroutine behind once
// every test has stopped them (servers, nodes, Dragonboat, Pebble, proxies).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
