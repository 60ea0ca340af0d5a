package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/tools"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/statemachine"
)

// Backup and restore (issue 13).
//
// A backup is a snapshot that Dragonboat exports (SnapshotOption.Exported):
// the whole state machine as of one applied index, written while writes go
// on, plus the Raft metadata of that point (index, term, membership). The
// index is the backup's revision: every key's mod revision in it is at most
// that index.
//
// Revisions are Raft indexes, so a restored cluster must continue after the
// backup's index, never start again at 1: a client holding mod revision R
// could otherwise compare-and-swap over writes it never saw. Restore
// therefore does not load the data into a fresh cluster; it imports the
// exported snapshot into the new node's Raft state (tools.ImportSnapshot),
// which makes the snapshot the node's log position, with this node as its
// only member. Dragonboat loads the data from it at the first start
// (RecoverFromSnapshot, as for a snapshot streamed from a leader), and the
// first new entry gets the backup's index + 1 or later.
//
// The old cluster's member metadata and cluster ID rows come with the data;
// Restore deletes them in a first, private run of the node, so that the new
// cluster gets its own ID and lists only its own members.

// ErrRestore: a restore was refused or failed; the data dir is left as it was.
var ErrRestore = errors.New("node: restore")

// Export is an exported snapshot on this node's disk, to be copied out and
// then removed.
type Export struct {
	// Dir holds Files; Remove deletes it.
	Dir string
	// Index is the applied index the snapshot was taken at: its revision.
	Index     uint64
	Files     []ExportFile
	ClusterID string
	// KeyCount is the number of keys in the snapshot (nil: unknown). The
	// state machine counted them while it wrote the snapshot.
	KeyCount *uint64
	root     string
}

// ExportFile is one file of an exported snapshot.
type ExportFile struct {
	Name string
	Size int64
}

// Remove deletes the export from the node's disk.
func (e *Export) Remove() error { return os.RemoveAll(e.root) }

// exportDir holds the export being taken; one at a time per node.
const exportDir = "backup"

// Export has Dragonboat export a snapshot of the state machine into the
// data dir. Writes go on meanwhile; the snapshot holds exactly the entries
// up to its index. Only one export runs at a time on a node (the caller
// serialises; an earlier export that was not removed, e.g. after a crash,
// is deleted first). The node must be ready: a lagging replica's copy
// would be old.
func (n *Node) Export(ctx context.Context) (*Export, error) {
	if n.stopped.Load() {
		return nil, ErrStopped
	}
	if !n.ready.Load() {
		return nil, n.notReady()
	}
	root := filepath.Join(n.cfg.DataDir, exportDir)
	if err := os.RemoveAll(root); err != nil {
		return nil, fmt.Errorf("export: clear %s: %w", root, err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(root)
		}
	}()
	ctx, cancel := withDeadline(ctx, 10*time.Minute)
	defer cancel()
	idx, err := n.nh.SyncRequestSnapshot(ctx, ShardID, dragonboat.SnapshotOption{Exported: true, ExportPath: root})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	// Dragonboat writes the snapshot into snapshot-<index, 16 hex digits>.
	dir := filepath.Join(root, fmt.Sprintf("snapshot-%016X", idx))
	files, err := listExport(dir)
	if err != nil {
		return nil, err
	}
	ok = true
	return &Export{Dir: dir, Index: idx, Files: files, ClusterID: n.ClusterID(), KeyCount: n.snapshotKeys(idx), root: root}, nil
}

// snapshotKeys is the key count of the snapshot taken at Raft index idx
// (nil if the state machine no longer knows it).
func (n *Node) snapshotKeys(idx uint64) *uint64 {
	v, err := n.nh.StaleRead(ShardID, statemachine.SavedSnapshotQuery{Index: idx})
	if err != nil {
		n.log.Warn("backup: key count unknown", "index", idx, "err", err)
		return nil
	}
	saved, _ := v.(statemachine.SavedSnapshot)
	if !saved.Found {
		n.log.Warn("backup: key count unknown: the state machine holds no record of the snapshot", "index", idx)
		return nil
	}
	return &saved.Keys
}

func listExport(dir string) ([]ExportFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	var files []ExportFile
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		if !info.Mode().IsRegular() {
			return nil, fmt.Errorf("export: unexpected %s in %s", e.Name(), dir)
		}
		files = append(files, ExportFile{Name: e.Name(), Size: info.Size()})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("export: %s is empty", dir)
	}
	return files, nil
}

// restoringFile marks a data dir whose restore has not finished: a normal
// start refuses it, and --restore starts over.
const restoringFile = "restoring"

// stateFiles are what a data dir that holds a node's state contains.
var stateFiles = []string{"identity.json", "raft", "sm", "started", "removed.json", "pending-id", "membership.txt", restoringFile}

// HeldState lists what in dir belongs to a node's state (nil: none).
func HeldState(dir string) ([]string, error) {
	var held []string
	for _, name := range stateFiles {
		_, err := os.Stat(filepath.Join(dir, name))
		switch {
		case err == nil:
			held = append(held, name)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("%w: %v", ErrRestore, err)
		}
	}
	return held, nil
}

// RestoreInterrupted tells whether a restore into dir did not finish.
func RestoreInterrupted(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, restoringFile))
	return err == nil
}

// Restored describes the node a restore made.
type Restored struct {
	ReplicaID membership.ReplicaID
	// Revision is the backup's index; the restored state machine applied it.
	Revision uint64
}

// Restore makes cfg.DataDir the data dir of a new single-voter cluster
// holding the exported snapshot in src (a directory holding the files of
// an Export taken at revision rev). The data dir must hold no state, unless an earlier restore
// into it was interrupted: that one is wiped and done again. On error the
// data dir holds no state. The node is not left running: start it as
// usual afterwards (a restart: identity and Raft state are in place).
func Restore(ctx context.Context, cfg Config, src string, rev uint64) (Restored, error) {
	cfg = withDefaults(cfg)
	if err := CheckRestoreConfig(cfg); err != nil {
		return Restored{}, err
	}
	if err := clearForRestore(cfg.DataDir); err != nil {
		return Restored{}, err
	}
	rid := cfg.ReplicaID
	if rid == 0 {
		rid = membership.NewReplicaID()
	}
	err := restore(ctx, cfg, src, rid, rev)
	if err != nil {
		if werr := membership.Wipe(cfg.DataDir, "raft", "sm", exportDir); werr != nil {
			err = errors.Join(err, werr)
		}
		os.Remove(filepath.Join(cfg.DataDir, restoringFile))
		return Restored{}, err
	}
	return Restored{ReplicaID: rid, Revision: rev}, nil
}

// CheckRestoreConfig refuses a configuration Restore would refuse: one
// that is invalid, or that asks for a cluster other than a new
// single-voter one. Callers check it before they unpack a backup, which
// may take long and fill the disk.
//
// The flags that ask for another cluster are named before Validate runs:
// its complaints about them (such as --join's missing PeerDialer, which
// the server adds later) would not say what to drop.
func CheckRestoreConfig(cfg Config) error {
	switch {
	case len(cfg.InitialMembers) > 0:
		return fmt.Errorf("%w: --restore starts a single-voter cluster: drop --initial-members (other nodes join it with --join)", ErrRestore)
	case cfg.Seeds != nil || cfg.BootstrapExpect > 0:
		return fmt.Errorf("%w: --restore starts a new cluster: drop --join, --discover and --bootstrap-expect (other nodes join it with --join)", ErrRestore)
	}
	cfg = withDefaults(cfg)
	return cfg.Validate()
}

// clearForRestore refuses a data dir that holds state, except one whose
// restore was interrupted, which it wipes.
func clearForRestore(dir string) error {
	held, err := HeldState(dir)
	if err != nil {
		return err
	}
	if len(held) == 0 {
		return nil
	}
	if !RestoreInterrupted(dir) {
		return fmt.Errorf("%w: the data dir %s holds a node's state (%v): restore into an empty or new --data-dir; nothing was changed",
			ErrRestore, dir, held)
	}
	if err := membership.Wipe(dir, "raft", "sm", exportDir); err != nil {
		return fmt.Errorf("%w: wipe the interrupted restore in %s: %v", ErrRestore, dir, err)
	}
	return nil
}

func restore(ctx context.Context, cfg Config, src string, rid membership.ReplicaID, rev uint64) error {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrRestore, err)
	}
	if err := markRestoring(cfg.DataDir); err != nil {
		return fmt.Errorf("%w: %v", ErrRestore, err)
	}
	installDragonboatLogger(cfg.Logger)
	nhc := (&Node{cfg: cfg}).nodeHostConfig()
	nhc.RaftEventListener, nhc.SystemEventListener = nil, nil
	if err := tools.ImportSnapshot(nhc, src, map[uint64]string{uint64(rid): cfg.RaftAddr}, uint64(rid)); err != nil {
		return fmt.Errorf("%w: import the snapshot: %v", ErrRestore, err)
	}
	members := map[membership.ReplicaID]string{rid: cfg.RaftAddr}
	id := membership.Identity{ReplicaID: rid, Origin: membership.OriginBootstrap, RaftAddr: cfg.RaftAddr,
		APIAddr: cfg.APIAddr, Created: time.Now().UTC(), InitialMembers: members}
	if err := membership.SaveIdentity(cfg.DataDir, id); err != nil {
		return fmt.Errorf("%w: save identity: %v", ErrRestore, err)
	}
	if err := membership.MarkStarted(cfg.DataDir); err != nil {
		return fmt.Errorf("%w: %v", ErrRestore, err)
	}
	if err := dropOldCluster(ctx, cfg, rid, rev); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(cfg.DataDir, restoringFile)); err != nil {
		return fmt.Errorf("%w: %v", ErrRestore, err)
	}
	return nil
}

// markRestoring writes the restoring marker durably, before anything else
// of the restore: a crash at any later point must leave it.
func markRestoring(dir string) error {
	return membership.WriteFileAtomic(dir, restoringFile, []byte("restore not finished: run kvd --restore FILE again\n"))
}

// dropOldCluster runs the restored node privately (no API, no peers) until
// it has loaded the snapshot and leads, deletes the old cluster's member
// metadata and cluster ID rows, checks that it continues from the backup's
// revision rev, and stops it.
func dropOldCluster(ctx context.Context, cfg Config, rid membership.ReplicaID, rev uint64) error {
	cfg.ReplicaID, cfg.Peers, cfg.Registry, cfg.Formation = rid, nil, nil, nil
	n, err := Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w: start the restored replica: %v", ErrRestore, err)
	}
	defer n.Stop()
	for !n.Ready() {
		if !sleep(ctx, 20*time.Millisecond) {
			return fmt.Errorf("%w: the restored replica did not become ready: %v", ErrRestore, ctx.Err())
		}
	}
	res, err := n.Range(ctx, statemachine.RangeQuery{Meta: true}, Linearizable)
	if err != nil {
		return fmt.Errorf("%w: read metadata: %v", ErrRestore, err)
	}
	var ops []statemachine.Op
	self := metaMemberKey(rid)
	for _, kv := range res.KVs {
		old := bytes.HasPrefix(kv.Key, []byte(metaClusterPrefix)) ||
			(bytes.HasPrefix(kv.Key, []byte(metaMemberPrefix)) && !bytes.Equal(kv.Key, self))
		if old {
			ops = append(ops, statemachine.Op{Type: statemachine.OpMetaDelete, Key: kv.Key})
		}
	}
	if len(ops) > 0 {
		if _, err := n.Propose(ctx, []statemachine.Command{{Ops: ops}}); err != nil {
			return fmt.Errorf("%w: drop the old cluster's metadata: %v", ErrRestore, err)
		}
	}
	if applied := n.appliedIndex(); applied < rev {
		// Never serve a restored cluster whose revisions went back.
		return fmt.Errorf("%w: the restored replica applied index %d, below the backup's revision %d", ErrRestore, applied, rev)
	}
	n.log.Info("restored: the old cluster's member metadata and ID are dropped", "revision", rev, "rows", len(ops))
	return nil
}
