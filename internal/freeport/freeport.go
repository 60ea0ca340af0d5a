// Package freeport hands tests loopback addresses to bind later.
//
// A port asked of the kernel with ":0" comes from the ephemeral range, the
// same range the kernel draws local ports of outgoing connections from: a
// node told to listen there later, or restarted on its old port, can find
// it taken by some connection ("bind: address already in use" in CI).
// Ports here come from 20000–32767, below Linux's default ephemeral range
// (32768–60999), and none is handed out twice in one process (a port free
// when asked stays unbound until its node starts; without the record the
// next ask could get it again).
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

const (
	low  = 20000
	high = 32768 // exclusive: the ephemeral range starts here
)

var handedOut = struct {
	sync.Mutex
	ports map[string]bool
}{ports: map[string]bool{}}

// Pick returns a loopback address whose port was free a moment ago and was
// not returned before in this process.
func Pick() (string, error) {
	for range 1000 {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", low+rand.IntN(high-low)))
		if err != nil {
			continue // in use
		}
		addr := ln.Addr().String()
		ln.Close()
		handedOut.Lock()
		seen := handedOut.ports[addr]
		handedOut.ports[addr] = true
		handedOut.Unlock()
		if !seen {
			return addr, nil
		}
	}
	return "", errors.New("freeport: no loopback port in 20000-32767 that is free and was not handed out before")
}

// Addr is Pick for tests: it fails t when no port is left.
func Addr(t testing.TB) string {
	t.Helper()
	addr, err := Pick()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
