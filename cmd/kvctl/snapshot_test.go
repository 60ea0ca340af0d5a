package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// fakeBackup streams data as a backup; badSum sends a wrong trailer.
type fakeBackup struct {
	data   []byte
	badSum bool
}

func (f *fakeBackup) Backup(_ context.Context, req *connect.Request[kvdv1.BackupRequest], s *connect.ServerStream[kvdv1.BackupResponse]) error {
	if req.Header().Get("Kvd-Join-Secret") != "s" {
		return connect.NewError(connect.CodePermissionDenied, errors.New("wrong or missing join secret"))
	}
	hdr := &kvdv1.BackupHeader{ClusterId: "c0ffee", Revision: 42, ReplicaId: 3, CreatedUnixMs: 1700000000000,
		Files: []*kvdv1.BackupFile{{Name: "snapshot.gbsnap", Size: uint64(len(f.data))}}}
	if err := s.Send(&kvdv1.BackupResponse{Part: &kvdv1.BackupResponse_Header{Header: hdr}}); err != nil {
		return err
	}
	for i := 0; i < len(f.data); i += 7 {
		if err := s.Send(&kvdv1.BackupResponse{Part: &kvdv1.BackupResponse_Data{Data: f.data[i:min(i+7, len(f.data))]}}); err != nil {
			return err
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
	addr := startFakeBackup(t, &fakeBackup{data: []byte("the exported snapshot's bytes")})
	file := filepath.Join(t.TempDir(), "b.backup")
	out, errOut, code := runKvctl(t, "", "--endpoints", addr, "--join-secret", "s", "snapshot", "save", file)
	if code != exitOK || !strings.Contains(out, "revision: 42") {
		t.Fatalf("save: exit %d, out %q, err %q", code, out, errOut)
	}
	out, errOut, code = runKvctl(t, "", "snapshot", "status", file)
	if code != exitOK || !strings.Contains(out, "cluster_id: c0ffee") || !strings.Contains(out, "checksum: sha256 ok") {
		t.Fatalf("status: exit %d, out %q, err %q", code, out, errOut)
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
		for _, p := range []string{file, file + ".tmp"} {
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("%s: %s was left behind", tc.name, p)
			}
		}
	}
}
