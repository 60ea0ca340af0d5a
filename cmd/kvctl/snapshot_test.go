package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// fakeBackup streams data as a backup with keyCount in its header; badSum
// sends a wrong trailer; stall, after the first data message, waits for
// the call to end.
type fakeBackup struct {
	data     []byte
	keyCount *uint64
	badSum   bool
	stall    bool
}

func (f *fakeBackup) Backup(ctx context.Context, req *connect.Request[kvdv1.BackupRequest], s *connect.ServerStream[kvdv1.BackupResponse]) error {
	if req.Header().Get("Kvd-Join-Secret") != "s" {
		return connect.NewError(connect.CodePermissionDenied, errors.New("wrong or missing join secret"))
	}
	hdr := &kvdv1.BackupHeader{ClusterId: "c0ffee", Revision: 42, ReplicaId: 3, CreatedUnixMs: 1700000000000,
		Files: []*kvdv1.BackupFile{{Name: "snapshot.gbsnap", Size: uint64(len(f.data))}}, KeyCount: f.keyCount}
	if err := s.Send(&kvdv1.BackupResponse{Part: &kvdv1.BackupResponse_Header{Header: hdr}}); err != nil {
		return err
	}
	for i := 0; i < len(f.data); i += 7 {
		if err := s.Send(&kvdv1.BackupResponse{Part: &kvdv1.BackupResponse_Data{Data: f.data[i:min(i+7, len(f.data))]}}); err != nil {
			return err
		}
		if f.stall {
			<-ctx.Done()
			return ctx.Err()
		}
	}
	sum := sha256.Sum256(f.data)
	if f.badSum {
		sum[0] ^= 1
	}
	return s.Send(&kvdv1.BackupResponse{Part: &kvdv1.BackupResponse_Trailer{Trailer: &kvdv1.BackupTrailer{Sha256: sum[:]}}})
}

func startFakeBackup(t *testing.T, f *fakeBackup) string {
	mux := http.NewServeMux()
	mux.Handle(kvdv1connect.NewMaintenanceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestSnapshotSaveAndStatus(t *testing.T) {
	keys := uint64(1234)
	addr := startFakeBackup(t, &fakeBackup{data: []byte("the exported snapshot's bytes"), keyCount: &keys})
	file := filepath.Join(t.TempDir(), "b.backup")
	out, errOut, code := runKvctl(t, "", "--endpoints", addr, "--join-secret", "s", "snapshot", "save", file)
	if code != exitOK || !strings.Contains(out, "revision: 42") || !strings.Contains(out, "key_count: 1234\n") {
		t.Fatalf("save: exit %d, out %q, err %q", code, out, errOut)
	}
	out, errOut, code = runKvctl(t, "", "snapshot", "status", file)
	if code != exitOK || !strings.Contains(out, "cluster_id: c0ffee") || !strings.Contains(out, "checksum: sha256 ok") ||
		!strings.Contains(out, "key_count: 1234\n") {
		t.Fatalf("status: exit %d, out %q, err %q", code, out, errOut)
	}
	out, errOut, code = runKvctl(t, "", "--output", "json", "snapshot", "status", file)
	if code != exitOK || !strings.Contains(out, `"key_count": 1234`) {
		t.Fatalf("status as JSON: exit %d, out %q, err %q", code, out, errOut)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-33] ^= 1 // the payload's last byte
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code = runKvctl(t, "", "snapshot", "status", file); code == exitOK || !strings.Contains(errOut, "SHA-256 mismatch") {
		t.Fatalf("status of a damaged file: exit %d, err %q", code, errOut)
	}
}

// A backup whose data does not match the node's sum, or that is refused,
// leaves neither FILE nor FILE.tmp.
func TestSnapshotSaveWritesNothingOnFailure(t *testing.T) {
	for _, tc := range []struct {
		name, secret string
		f            *fakeBackup
		code         int
		msg          string
	}{
		{"bad sum", "s", &fakeBackup{data: []byte("data"), badSum: true}, exitGeneric, "does not match the node's SHA-256"},
		{"no secret", "", &fakeBackup{data: []byte("data")}, exitPermissionDenied, "join secret"},
	} {
		addr := startFakeBackup(t, tc.f)
		file := filepath.Join(t.TempDir(), "b.backup")
		args := []string{"--endpoints", addr, "snapshot", "save", file}
		if tc.secret != "" {
			args = append([]string{"--join-secret", tc.secret}, args...)
		}
		_, errOut, code := runKvctl(t, "", args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Fatalf("%s: exit %d (want %d), err %q (want %q)", tc.name, code, tc.code, errOut, tc.msg)
		}
		if left := dirNames(t, filepath.Dir(file)); len(left) > 0 {
			t.Fatalf("%s: %v left behind", tc.name, left)
		}
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// A node that sent no key count (an older release) makes one that status
// calls unknown, not 0.
func TestSnapshotKeyCountUnknown(t *testing.T) {
	addr := startFakeBackup(t, &fakeBackup{data: []byte("data")})
	file := filepath.Join(t.TempDir(), "b.backup")
	if _, errOut, code := runKvctl(t, "", "--endpoints", addr, "--join-secret", "s", "snapshot", "save", file); code != exitOK {
		t.Fatalf("save: exit %d, err %q", code, errOut)
	}
	out, errOut, code := runKvctl(t, "", "snapshot", "status", file)
	if code != exitOK || !strings.Contains(out, "key_count: unknown\n") {
		t.Fatalf("status: exit %d, out %q, err %q", code, out, errOut)
	}
	out, _, _ = runKvctl(t, "", "--output", "json", "snapshot", "status", file)
	if !strings.Contains(out, `"key_count": null`) {
		t.Fatalf("status as JSON: %q", out)
	}
}

// A save writes its own temporary file: one that another save to the same
// path is writing (here FILE.tmp, the name every save used to share) is
// neither truncated nor renamed.
func TestSnapshotSaveOwnTemp(t *testing.T) {
	addr := startFakeBackup(t, &fakeBackup{data: []byte("data")})
	dir := t.TempDir()
	file := filepath.Join(dir, "b.backup")
	other := file + ".tmp"
	if err := os.WriteFile(other, []byte("another save's data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runKvctl(t, "", "--endpoints", addr, "--join-secret", "s", "snapshot", "save", file); code != exitOK {
		t.Fatalf("save: exit %d, err %q", code, errOut)
	}
	if b, err := os.ReadFile(other); err != nil || string(b) != "another save's data" {
		t.Fatalf("the other save's file: %q, %v", b, err)
	}
	if names := dirNames(t, dir); len(names) != 2 {
		t.Fatalf("the directory holds %v, want the backup and the other save's file", names)
	}
	if _, errOut, code := runKvctl(t, "", "snapshot", "status", file); code != exitOK {
		t.Fatalf("status: exit %d, err %q", code, errOut)
	}
}

// Ctrl-C during a save ends it and removes its temporary file.
func TestSnapshotSaveInterrupted(t *testing.T) {
	addr := startFakeBackup(t, &fakeBackup{data: []byte("data that stalls after the first message"), stall: true})
	dir := t.TempDir()
	file := filepath.Join(dir, "b.backup")
	type result struct {
		errOut string
		code   int
	}
	done := make(chan result, 1)
	go func() {
		_, errOut, code := runKvctl(t, "", "--endpoints", addr, "--join-secret", "s", "snapshot", "save", file)
		done <- result{errOut, code}
	}()
	// The temporary file exists once kvctl handles SIGINT itself: sending
	// it earlier would end the test process.
	deadline := time.Now().Add(10 * time.Second)
	for len(dirNames(t, dir)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no temporary file appeared")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.code == exitOK || !strings.Contains(r.errOut, "interrupted") {
			t.Fatalf("exit %d, err %q", r.code, r.errOut)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the save did not end after SIGINT")
	}
	if left := dirNames(t, dir); len(left) > 0 {
		t.Fatalf("%v left behind", left)
	}
}
