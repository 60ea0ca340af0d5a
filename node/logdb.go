package node

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/plugin/tan"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
)

// logDBFactory picks the LogDB for the NodeHost in dir: tan for a dir that
// holds tan data, or a new dir when KVD_RAFT_LOGDB=tan; otherwise
// Dragonboat's default Pebble LogDB (nil). A NodeHost refuses to open a dir
// with another LogDB type, so a dir keeps the LogDB it was made with.
//
// Tan is opt-in, not the default: in an e2e fault run (TestFault_KillVoter)
// a tan node's Raft stopped for good right after it became leader (it
// dropped every incoming message), and Dragonboat-only benchmarks saw tan's
// first proposals time out in 1 of ~33 runs; neither was explained yet.
//
// Why tan: Dragonboat's Pebble LogDB syncs every write, also an update that
// only moves the commit index, so each replica fsyncs twice per put, and a
// replica's next append waits for the second. Tan, like etcd's WAL, syncs an
// update only when it holds entries, a snapshot, or a new term or vote:
// one fsync per put (bench/results/commitlat.md).
func logDBFactory(dir string) config.LogDBFactory {
	if _, err := os.Stat(filepath.Join(dir, "dragonboat.ds")); errors.Is(err, fs.ErrNotExist) {
		if os.Getenv("KVD_RAFT_LOGDB") == "tan" {
			return tanFactory{} // a new NodeHost, tan asked for
		}
		return nil
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*", "*", "tandb")); len(m) > 0 {
		return tanFactory{}
	}
	return nil
}

// tanFactory creates Dragonboat's tan LogDB behind stateFiller.
type tanFactory struct{}

func (tanFactory) Create(cfg config.NodeHostConfig, cb config.LogDBCallback, dirs, wals []string) (raftio.ILogDB, error) {
	db, err := tan.Factory.Create(cfg, cb, dirs, wals)
	if err != nil {
		return nil, err
	}
	return &stateFiller{ILogDB: db, states: map[raftio.NodeInfo]pb.State{}}, nil
}

func (tanFactory) Name() string { return tan.Factory.Name() }

// stateFiller gives every update the replica's current Raft state.
// Dragonboat leaves an update's State empty when it has not changed; tan
// then remembers the empty state as the current one, and syncs the next
// update as if term and vote had changed.
type stateFiller struct {
	raftio.ILogDB
	mu      sync.Mutex
	states  map[raftio.NodeInfo]pb.State
	scratch []pb.Update
}

func (s *stateFiller) SaveRaftState(updates []pb.Update, shardID uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scratch = append(s.scratch[:0], updates...)
	for i := range s.scratch {
		u := &s.scratch[i]
		ni := raftio.NodeInfo{ShardID: u.ShardID, ReplicaID: u.ReplicaID}
		if pb.IsEmptyState(u.State) {
			if st, ok := s.states[ni]; ok {
				u.State = st
			}
		} else {
			s.states[ni] = u.State
		}
	}
	err := s.ILogDB.SaveRaftState(s.scratch, shardID)
	clear(s.scratch)
	return err
}
