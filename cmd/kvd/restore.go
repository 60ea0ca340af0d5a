package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/backup"
	"github.com/kvd-project/kvd/node"
	"github.com/kvd-project/kvd/server"
)

func restoreFlag() cli.Flag {
	return &cli.StringFlag{Name: "restore", Usage: "seed a new single-voter cluster from a backup `FILE` (kvctl snapshot save) " +
		"into an empty --data-dir, then serve; other nodes join it with --join. Revisions continue from the backup's; " +
		"the old cluster's members and cluster ID are not restored. Give it once: later starts are plain restarts"}
}

// restoreDir is where the backup's files are unpacked, inside the data dir
// (same file system, room for the data); removed when the restore ends.
const restoreDir = "restore-src"

// prepareDataDir runs before the server starts. With --restore FILE it
// seeds the data dir from the backup; without, it refuses a data dir whose
// restore was interrupted (it lacks the cleanup a restore does last).
func prepareDataDir(ctx context.Context, cfg server.Config, file string) error {
	dir := cfg.Node.DataDir
	if file == "" {
		if node.RestoreInterrupted(dir) {
			return fmt.Errorf("the restore into %s did not finish: run kvd --restore FILE again with this data dir (it starts over)", dir)
		}
		return nil
	}
	// What node.Restore would refuse is refused before the file is read:
	// unpacking it may take long, and would be thrown away.
	if err := node.CheckRestoreConfig(cfg.Node); err != nil {
		return err
	}
	held, err := node.HeldState(dir)
	if err != nil {
		return err
	}
	if len(held) > 0 && !node.RestoreInterrupted(dir) {
		return fmt.Errorf("--restore: the data dir %s holds a node's state (%v): restore into an empty or new --data-dir; nothing was changed", dir, held)
	}
	h, created, err := unpack(file, dir)
	if err != nil {
		return err
	}
	if cfg.Node.Logger == nil {
		cfg.Node.Logger = cfg.Logger
	}
	src := filepath.Join(dir, restoreDir)
	r, err := node.Restore(ctx, cfg.Node, src, h.Revision)
	os.RemoveAll(src)
	if err != nil {
		if created {
			os.Remove(dir) // only if empty: a failed Restore leaves no state
		}
		return err
	}
	cfg.Logger.Info("restored a backup into a new single-voter cluster; other nodes join it with --join",
		"file", file, "revision", r.Revision, "old_cluster_id", h.ClusterID, "replica", uint64(r.ReplicaID), "data_dir", dir)
	return nil
}

// unpack verifies the backup while it writes its files into the data dir,
// and tells whether it created the data dir; on any error it leaves the
// data dir as it found it.
func unpack(file, dir string) (h backup.Header, created bool, err error) {
	_, err = os.Stat(dir)
	created = errors.Is(err, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return backup.Header{}, false, err
	}
	src := filepath.Join(dir, restoreDir)
	if err := os.RemoveAll(src); err != nil {
		return backup.Header{}, false, err
	}
	if h, err = backup.Unpack(file, src); err != nil {
		if created {
			os.Remove(dir)
		}
		return backup.Header{}, false, fmt.Errorf("--restore %s: %w; nothing was written", file, err)
	}
	return h, created, nil
}
