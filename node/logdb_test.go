package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
)

// recordingLogDB keeps the updates it is asked to save.
type recordingLogDB struct {
	raftio.ILogDB
	saved []pb.Update
}

func (r *recordingLogDB) SaveRaftState(updates []pb.Update, _ uint64) error {
	r.saved = append(r.saved, updates...)
	return nil
}

// An update whose state Dragonboat left empty reaches the LogDB with the
// replica's current state; the caller's updates are not changed.
func TestStateFillerFillsEmptyState(t *testing.T) {
	inner := &recordingLogDB{}
	s := &stateFiller{ILogDB: inner, states: map[raftio.NodeInfo]pb.State{}}
	st := pb.State{Term: 2, Vote: 1, Commit: 5}
	entries := []pb.Update{{ShardID: 1, ReplicaID: 1, EntriesToSave: []pb.Entry{{Index: 6, Term: 2}}}}
	// Nothing known yet: passed on as it is.
	if err := s.SaveRaftState(entries, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveRaftState([]pb.Update{{ShardID: 1, ReplicaID: 1, State: st}, {ShardID: 1, ReplicaID: 2}}, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveRaftState(entries, 1); err != nil {
		t.Fatal(err)
	}
	want := []pb.State{{}, st, {}, st}
	if len(inner.saved) != len(want) {
		t.Fatalf("saved %d updates, want %d", len(inner.saved), len(want))
	}
	for i, u := range inner.saved {
		if !pb.IsStateEqual(u.State, want[i]) {
			t.Errorf("update %d saved with state %+v, want %+v", i, u.State, want[i])
		}
	}
	if !pb.IsEmptyState(entries[0].State) {
		t.Errorf("the caller's update was changed: %+v", entries[0].State)
	}
}

func TestLogDBFactoryChoice(t *testing.T) {
	dir := t.TempDir()
	if f := logDBFactory(dir); f != nil {
		t.Fatalf("a new NodeHost dir gets %s by default, want Dragonboat's default (Pebble)", f.Name())
	}
	t.Setenv("KVD_RAFT_LOGDB", "tan")
	if _, ok := logDBFactory(dir).(tanFactory); !ok {
		t.Fatal("a new NodeHost dir with KVD_RAFT_LOGDB=tan does not get tan")
	}
	t.Setenv("KVD_RAFT_LOGDB", "")
	if err := os.WriteFile(filepath.Join(dir, "dragonboat.ds"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if f := logDBFactory(dir); f != nil {
		t.Fatalf("a NodeHost dir without tan data gets %s, want Dragonboat's default (Pebble)", f.Name())
	}
	if err := os.MkdirAll(filepath.Join(dir, "host", "00000000000000000001", "tandb"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, ok := logDBFactory(dir).(tanFactory); !ok {
		t.Fatal("a NodeHost dir with tan data does not get tan")
	}
}

// A data dir whose Raft state an older kvd wrote with Dragonboat's Pebble
// LogDB starts with that LogDB: a NodeHost refuses another LogDB type.
func TestStartKeepsPebbleLogDB(t *testing.T) {
	cfg := testConfig(t)
	nhc := (&Node{cfg: cfg}).nodeHostConfig()
	nhc.Expert.LogDBFactory = nil // as kvd before tan
	nhc.RaftEventListener, nhc.SystemEventListener = nil, nil
	nh, err := dragonboat.NewNodeHost(nhc)
	if err != nil {
		t.Fatal(err)
	}
	nh.Close()
	n := startReady(t, cfg)
	defer n.Stop()
	if m, _ := filepath.Glob(filepath.Join(cfg.DataDir, "raft", "*", "*", "tandb")); len(m) > 0 {
		t.Fatalf("tan data in a Pebble LogDB dir: %v", m)
	}
	if _, err := n.Propose(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
}
