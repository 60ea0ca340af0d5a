package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
