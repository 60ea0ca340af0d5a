package rpc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/node"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

type fakeExporter struct {
	export *node.Export
	err    error
	block  chan struct{} // Export waits for it when set
	inside chan struct{} // Export signals it was entered, when set
}

func (f *fakeExporter) Export(ctx context.Context) (*node.Export, error) {
	if f.inside != nil {
		f.inside <- struct{}{}
	}
	if f.block != nil {
		<-f.block
	}
	return f.export, f.err
}

func (f *fakeExporter) Status() node.Status { return node.Status{ReplicaID: 9} }

// backupServerFor serves Maintenance behind the guard with secret "s".
func backupServerFor(t *testing.T, f *fakeExporter) kvdv1connect.MaintenanceClient {
	t.Helper()
	mux := http.NewServeMux()
	mountExporter(mux, &backupServer{n: f}, []connect.HandlerOption{connect.WithInterceptors(newGuard("s", false))})
	srv := httptest.NewUnstartedServer(mux)
	// Shorter than a paced backup below: the handler must lift them.
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return kvdv1connect.NewMaintenanceClient(srv.Client(), srv.URL)
}

func exportOf(t *testing.T, files map[string][]byte) *node.Export {
	dir := t.TempDir()
	e := &node.Export{Dir: dir, Index: 77, ClusterID: "abc"}
	for _, name := range []string{"a.gbsnap", "b.metadata"} {
		if err := os.WriteFile(filepath.Join(dir, name), files[name], 0o644); err != nil {
			t.Fatal(err)
		}
		e.Files = append(e.Files, node.ExportFile{Name: name, Size: int64(len(files[name]))})
	}
	return e
}

func backupRequest(secret string, rate uint64) *connect.Request[kvdv1.BackupRequest] {
	req := connect.NewRequest(&kvdv1.BackupRequest{MaxBytesPerSecond: rate})
	if secret != "" {
		req.Header().Set(SecretHeader, secret)
	}
	return req
}

// readBackup returns the header, the data and the trailer's sum.
func readBackup(t *testing.T, c kvdv1connect.MaintenanceClient, req *connect.Request[kvdv1.BackupRequest]) (*kvdv1.BackupHeader, []byte, []byte, error) {
	t.Helper()
	s, err := c.Backup(context.Background(), req)
	if err != nil {
		return nil, nil, nil, err
	}
	defer s.Close()
	var hdr *kvdv1.BackupHeader
	var data, sum []byte
	for s.Receive() {
		switch p := s.Msg().Part.(type) {
		case *kvdv1.BackupResponse_Header:
			hdr = p.Header
		case *kvdv1.BackupResponse_Data:
			data = append(data, p.Data...)
		case *kvdv1.BackupResponse_Trailer:
			sum = p.Trailer.Sha256
		}
	}
	return hdr, data, sum, s.Err()
}

func TestBackupStreamsTheExport(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 3*backupChunk+5)
	f := &fakeExporter{export: exportOf(t, map[string][]byte{"a.gbsnap": big, "b.metadata": []byte("meta")})}
	keys := uint64(1234)
	f.export.KeyCount = &keys
	c := backupServerFor(t, f)
	start := time.Now()
	hdr, data, sum, err := readBackup(t, c, backupRequest("s", 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Revision != 77 || hdr.ClusterId != "abc" || hdr.ReplicaId != 9 || len(hdr.Files) != 2 || hdr.Files[0].Size != uint64(len(big)) {
		t.Fatalf("header %v", hdr)
	}
	if hdr.KeyCount == nil || *hdr.KeyCount != keys {
		t.Fatalf("header key count %v, want %d", hdr.KeyCount, keys)
	}
	if !bytes.Equal(data, append(bytes.Clone(big), "meta"...)) {
		t.Fatalf("data: %d bytes, not the files in order", len(data))
	}
	if want := sha256.Sum256(data); !bytes.Equal(sum, want[:]) {
		t.Fatal("trailer sum does not match the data")
	}
	// 3 MiB at 4 MiB/s: at least ~750 ms, past the server's timeouts.
	if d := time.Since(start); d < 700*time.Millisecond {
		t.Fatalf("3 MiB at 4 MiB/s took %v: the rate is not bounded", d)
	}
}

// An export whose key count is unknown sends none: absent, not zero.
func TestBackupKeyCountUnknown(t *testing.T) {
	f := &fakeExporter{export: exportOf(t, map[string][]byte{"a.gbsnap": []byte("data"), "b.metadata": []byte("meta")})}
	hdr, _, _, err := readBackup(t, backupServerFor(t, f), backupRequest("s", 0))
	if err != nil {
		t.Fatal(err)
	}
	if hdr.KeyCount != nil {
		t.Fatalf("header key count %d, want none", *hdr.KeyCount)
	}
}

func TestBackupNeedsTheSecret(t *testing.T) {
	f := &fakeExporter{export: exportOf(t, map[string][]byte{"a.gbsnap": []byte("x"), "b.metadata": []byte("y")})}
	c := backupServerFor(t, f)
	for _, secret := range []string{"", "wrong"} {
		_, _, _, err := readBackup(t, c, backupRequest(secret, 0))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("secret %q: got %v, want PermissionDenied", secret, err)
		}
	}
}

func TestBackupNotReadyIsUnavailable(t *testing.T) {
	c := backupServerFor(t, &fakeExporter{err: &node.NotReadyError{Applied: 3, Target: 9}})
	_, _, _, err := readBackup(t, c, backupRequest("s", 0))
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
}

func TestOneBackupAtATime(t *testing.T) {
	f := &fakeExporter{export: exportOf(t, map[string][]byte{"a.gbsnap": []byte("x"), "b.metadata": []byte("y")}),
		block: make(chan struct{}), inside: make(chan struct{}, 1)}
	c := backupServerFor(t, f)
	first := make(chan error, 1)
	go func() {
		_, _, _, err := readBackup(t, c, backupRequest("s", 0))
		first <- err
	}()
	<-f.inside
	_, _, _, err := readBackup(t, c, backupRequest("s", 0))
	close(f.block)
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("second backup: got %v, want ResourceExhausted", err)
	}
	if err := <-first; err != nil {
		t.Fatalf("first backup: %v", err)
	}
}
