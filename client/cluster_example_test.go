package client_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/kvd-project/kvd/internal/freeport"
	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/server"
)

// exampleCluster starts three real kvd servers in this process (static
// cluster on loopback, data in a temp dir) for the examples, and returns
// their API addresses and a function that stops them.
func exampleCluster() ([]string, func()) {
	dir, err := os.MkdirTemp("", "kvd-example")
	if err != nil {
		panic(err)
	}
	free := func() string {
		addr, err := freeport.Pick()
		if err != nil {
			panic(err)
		}
		return addr
	}
	members := map[membership.ReplicaID]string{1: free(), 2: free(), 3: free()}
	var servers []*server.Server
	var endpoints []string
	for id := membership.ReplicaID(1); id <= 3; id++ {
		cfg := server.DefaultConfig()
		cfg.Listen = free()
		cfg.Node.DataDir = fmt.Sprintf("%s/n%d", dir, id)
		cfg.Node.ReplicaID = id
		cfg.Node.RaftAddr = members[id]
		cfg.Node.InitialMembers = members
		cfg.Node.RTT = 10 * time.Millisecond
		cfg.Node.ElectionTicks, cfg.Node.HeartbeatTicks = 10, 1
		s, err := server.New(cfg)
		if err != nil {
			panic(err)
		}
		if err := s.Start(context.Background()); err != nil {
			panic(err)
		}
		servers = append(servers, s)
		endpoints = append(endpoints, s.Addr())
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ready := 0
		for _, s := range servers {
			if st := s.Node().Status(); st.Ready && st.LeaderID != 0 {
				ready++
			}
		}
		if ready == len(servers) {
			break
		}
		if time.Now().After(deadline) {
			panic("example cluster not ready")
		}
	}
	return endpoints, func() {
		for _, s := range servers {
			s.Stop(context.Background())
		}
		os.RemoveAll(dir)
	}
}
