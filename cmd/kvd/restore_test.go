package main

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvd-project/kvd/backup"
	"github.com/kvd-project/kvd/server"
)

// A data dir whose restore did not finish is refused by a plain start and
// by --restore of a file that is not a backup, which leaves it as it was.
func TestPrepareDataDir(t *testing.T) {
	dir := t.TempDir()
	cfg := server.DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Node.DataDir = dir
	if err := prepareDataDir(context.Background(), cfg, ""); err != nil {
		t.Fatalf("an empty data dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "restoring"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := prepareDataDir(context.Background(), cfg, "")
	if err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("a plain start after an interrupted restore: %v", err)
	}
	notBackup := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(notBackup, []byte("hello, this is not a kvd backup file"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = prepareDataDir(context.Background(), cfg, notBackup)
	if err == nil || !strings.Contains(err.Error(), "not a kvd backup") || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("--restore of a file that is not a backup: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the refused restore changed the data dir: %v", entries)
	}
}

// validBackup writes a backup file that unpacks (its payload is no
// snapshot: whatever reads it fails after the unpack).
func validBackup(t *testing.T) string {
	t.Helper()
	data := []byte("not a snapshot, but a well-formed backup")
	path := filepath.Join(t.TempDir(), "b.backup")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := backup.NewWriter(f, backup.Header{Revision: 5, Created: time.Now(), Files: []backup.File{{Name: "snapshot.gbsnap", Size: int64(len(data))}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// --restore with flags for another kind of cluster is refused before the
// file is read: the data dir is not created, let alone filled.
func TestRestoreRefusedFlagsWriteNothing(t *testing.T) {
	file := validBackup(t)
	for _, flags := range [][]string{
		{"--join", "127.0.0.1:1"},
		{"--discover", "dns:localhost:1"},
		{"--discover", "dns:localhost:1", "--bootstrap-expect", "3"},
		{"--initial-members", "1=127.0.0.1:2,2=127.0.0.1:3,3=127.0.0.1:4", "--node-id", "1"},
	} {
		dir := filepath.Join(t.TempDir(), "data")
		cfg := parse(t, append([]string{"--data-dir", dir}, flags...)...)
		cfg.Logger = slog.New(slog.DiscardHandler)
		err := prepareDataDir(context.Background(), cfg, file)
		if err == nil || !strings.Contains(err.Error(), "drop --") {
			t.Fatalf("%v: %v", flags, err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%v: the refused restore left the data dir %s (%v)", flags, dir, err)
		}
	}
}
