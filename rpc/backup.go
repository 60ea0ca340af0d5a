package rpc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"

	"github.com/kvd-project/kvd/node"
)

// DefaultBackupRate bounds how fast a node sends a backup unless the
// request asks otherwise (BackupRequest.max_bytes_per_second): the export
// Dragonboat writes is read back from the node's disk at this rate.
const DefaultBackupRate = 64 << 20

// backupChunk is the most data one BackupResponse carries.
const backupChunk = 1 << 20

// Exporter is what Backup needs from the node.
type Exporter interface {
	Export(ctx context.Context) (*node.Export, error)
	Status() node.Status
}

type backupServer struct {
	n    Exporter
	busy atomic.Bool // one backup at a time: Export reuses one directory
}

// NewMaintenanceServer returns the kvd.v1.Maintenance handler implementation.
func NewMaintenanceServer(n Exporter) kvdv1connect.MaintenanceHandler {
	return &backupServer{n: n}
}

// mountExporter serves kvd.v1.Maintenance. A backup lasts as long as its
// data takes to send: the server's read and write timeouts, which protect
// unary calls, are lifted for it.
func mountExporter(mux *http.ServeMux, b *backupServer, opts []connect.HandlerOption) {
	path, h := kvdv1connect.NewMaintenanceHandler(b, opts...)
	mux.Handle(path, withClientCert(withoutDeadlines(h)))
}

func withoutDeadlines(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		h.ServeHTTP(w, r)
	})
}

func (s *backupServer) Backup(ctx context.Context, req *connect.Request[kvdv1.BackupRequest], stream *connect.ServerStream[kvdv1.BackupResponse]) error {
	return s.backup(ctx, req.Msg, stream)
}

func (s *backupServer) backup(ctx context.Context, m *kvdv1.BackupRequest, stream sender[kvdv1.BackupResponse]) error {
	if !s.busy.CompareAndSwap(false, true) {
		return connect.NewError(connect.CodeResourceExhausted,
			errors.New("a backup is already running on this node: wait for it to finish, or back up from another node"))
	}
	defer s.busy.Store(false)
	e, err := s.n.Export(ctx)
	if err != nil {
		return toConnect(fmt.Errorf("backup: %w", err))
	}
	defer e.Remove()
	hdr := &kvdv1.BackupHeader{ClusterId: e.ClusterID, Revision: e.Index, ReplicaId: uint64(s.n.Status().ReplicaID),
		CreatedUnixMs: time.Now().UnixMilli(), KeyCount: e.KeyCount}
	for _, f := range e.Files {
		hdr.Files = append(hdr.Files, &kvdv1.BackupFile{Name: f.Name, Size: uint64(f.Size)})
	}
	if err := stream.Send(&kvdv1.BackupResponse{Part: &kvdv1.BackupResponse_Header{Header: hdr}}); err != nil {
		return err
	}
	rate := int64(m.GetMaxBytesPerSecond())
	if rate <= 0 {
		rate = DefaultBackupRate
	}
	p := &pacedSender{ctx: ctx, stream: stream, rate: rate, start: time.Now(), sum: sha256.New()}
	for _, f := range e.Files {
		if err := p.sendFile(filepath.Join(e.Dir, f.Name), f.Size); err != nil {
			return toConnect(fmt.Errorf("backup: %w", err))
		}
	}
	return stream.Send(&kvdv1.BackupResponse{Part: &kvdv1.BackupResponse_Trailer{Trailer: &kvdv1.BackupTrailer{Sha256: p.sum.Sum(nil)}}})
}

// pacedSender sends data messages at no more than rate bytes a second on
// average since start.
type pacedSender struct {
	ctx    context.Context
	stream sender[kvdv1.BackupResponse]
	rate   int64
	start  time.Time
	sent   int64
	sum    hash.Hash
	buf    []byte
}

func (p *pacedSender) sendFile(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if p.buf == nil {
		p.buf = make([]byte, backupChunk)
	}
	r := io.LimitReader(f, size)
	var n int64
	for {
		k, err := io.ReadFull(r, p.buf)
		if k > 0 {
			n += int64(k)
			if err := p.send(p.buf[:k]); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if n != size {
		return fmt.Errorf("%s: read %d of %d bytes", filepath.Base(path), n, size)
	}
	return nil
}

func (p *pacedSender) send(b []byte) error {
	p.sum.Write(b)
	if err := p.stream.Send(&kvdv1.BackupResponse{Part: &kvdv1.BackupResponse_Data{Data: b}}); err != nil {
		return err
	}
	p.sent += int64(len(b))
	due := p.start.Add(time.Duration(float64(p.sent) / float64(p.rate) * float64(time.Second)))
	if wait := time.Until(due); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-p.ctx.Done():
			return p.ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
