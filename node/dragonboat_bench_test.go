package node

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/logger"
	"github.com/lni/dragonboat/v4/plugin/tan"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/kvd-project/kvd/internal/freeport"
	"github.com/kvd-project/kvd/statemachine"
)

// BenchmarkDragonboatPropose is Dragonboat alone, the floor under kvd's
// one-client put: three NodeHosts in this process on loopback, kvd's engine
// and LogDB settings (fsync on), a state machine that does nothing
// (sm=nop) or kvd's (sm=kvd), one put at a time from the leader. With
// notifycommit=true the time to the
// commit notification (NotifyCommit) is reported beside the time to the
// applied result. logdb=pebble is Dragonboat's default LogDB (kvd's before
// tan), tan is plugin/tan as shipped, tanfill is kvd's (node/logdb.go).
//
//	go test -run '^$' -bench DragonboatPropose -benchtime 2000x ./node/
func BenchmarkDragonboatPropose(b *testing.B) {
	for _, logdb := range []string{"pebble", "tan", "tanfill"} {
		for _, sm := range []string{"nop", "kvd"} {
			for _, notify := range []bool{false, true} {
				b.Run(fmt.Sprintf("logdb=%s/sm=%s/notifycommit=%v", logdb, sm, notify), func(b *testing.B) {
					benchDragonboat(b, logdb, sm, notify)
				})
			}
		}
	}
}

type nopSM struct{ n uint64 }

func (s *nopSM) Update(e sm.Entry) (sm.Result, error) {
	s.n++
	return sm.Result{Value: e.Index}, nil
}
func (s *nopSM) Lookup(interface{}) (interface{}, error) { return s.n, nil }
func (s *nopSM) SaveSnapshot(io.Writer, sm.ISnapshotFileCollection, <-chan struct{}) error {
	return nil
}
func (s *nopSM) RecoverFromSnapshot(io.Reader, []sm.SnapshotFile, <-chan struct{}) error { return nil }
func (s *nopSM) Close() error                                                            { return nil }

func benchDragonboat(b *testing.B, logdb, smKind string, notify bool) {
	logger.GetLogger("raft").SetLevel(logger.ERROR)
	logger.GetLogger("rsm").SetLevel(logger.ERROR)
	logger.GetLogger("transport").SetLevel(logger.ERROR)
	logger.GetLogger("dragonboat").SetLevel(logger.ERROR)
	logger.GetLogger("logdb").SetLevel(logger.ERROR)
	members := map[uint64]dragonboat.Target{}
	for i := uint64(1); i <= 3; i++ {
		members[i] = freeport.Addr(b)
	}
	hosts := make([]*dragonboat.NodeHost, 3)
	for i := range hosts {
		id := uint64(i + 1)
		n := &Node{cfg: Config{DataDir: b.TempDir(), RaftAddr: members[id], RTT: 10 * time.Millisecond}}
		nhc := n.nodeHostConfig()
		nhc.RaftEventListener, nhc.SystemEventListener = nil, nil
		nhc.NodeHostDir = filepath.Join(n.cfg.DataDir, "raft")
		nhc.NotifyCommit = notify
		switch logdb {
		case "pebble":
			nhc.Expert.LogDBFactory = nil // Dragonboat's default
		case "tan":
			nhc.Expert.LogDBFactory = tan.Factory
		case "tanfill":
			nhc.Expert.LogDBFactory = tanFactory{}
		}
		nh, err := dragonboat.NewNodeHost(nhc)
		if err != nil {
			b.Fatal(err)
		}
		defer nh.Close()
		rc := config.Config{ShardID: ShardID, ReplicaID: id, ElectionRTT: 10, HeartbeatRTT: 1, CheckQuorum: true, PreVote: true}
		if smKind == "nop" {
			err = nh.StartReplica(members, false, func(uint64, uint64) sm.IStateMachine { return &nopSM{} }, rc)
		} else {
			err = nh.StartOnDiskReplica(members, false, statemachine.New(filepath.Join(n.cfg.DataDir, "sm"), statemachine.Config{CacheSize: 32 << 20}), rc)
		}
		if err != nil {
			b.Fatal(err)
		}
		hosts[i] = nh
	}
	var leader *dragonboat.NodeHost
	for leader == nil {
		for i, nh := range hosts {
			if id, _, ok, _ := nh.GetLeaderID(ShardID); ok && id == uint64(i+1) {
				leader = nh
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	session := leader.GetNoOPSession(ShardID)
	key := make([]byte, 16)
	value := make([]byte, 128)
	ctx := context.Background()
	// warm up
	cmdFor := func(i int) []byte {
		copy(key, fmt.Sprintf("k%015d", i%100000))
		return statemachine.EncodeCommands(nil, []statemachine.Command{{Ops: []statemachine.Op{{Type: statemachine.OpPut, Key: key, Value: value}}}})
	}
	for i := range 200 {
		cmd := cmdFor(i)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if _, err := leader.SyncPropose(cctx, session, cmd); err != nil {
			var views []string
			for i, nh := range hosts {
				id, term, ok, _ := nh.GetLeaderID(ShardID)
				views = append(views, fmt.Sprintf("host %d: leader %d term %d valid %v", i+1, id, term, ok))
			}
			b.Fatalf("warm-up proposal %d: %v; %v", i, err, views)
		}
		cancel()
	}
	commits := make([]time.Duration, 0, b.N)
	applies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		cmd := cmdFor(i)
		start := time.Now()
		rs, err := leader.Propose(session, cmd, 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if notify {
			c := rs.ResultC()
			r := <-c
			if !r.Committed() {
				b.Fatalf("not committed: %+v", r)
			}
			commits = append(commits, time.Since(start))
			if !r.Completed() {
				r = <-c
			}
			if !r.Completed() {
				b.Fatalf("not applied: %+v", r)
			}
		} else {
			r := <-rs.ResultC()
			if !r.Completed() {
				b.Fatalf("not applied: %+v", r)
			}
		}
		applies = append(applies, time.Since(start))
		rs.Release()
	}
	b.StopTimer()
	report := func(name string, ds []time.Duration) {
		if len(ds) == 0 {
			return
		}
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), name+"-p50-µs")
		b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), name+"-p99-µs")
	}
	report("commit", commits)
	report("applied", applies)
}
