package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/backup"
	"github.com/kvd-project/kvd/client"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "back up the data into a file, or check a backup file",
		Subcommands: []*cli.Command{
			{
				Name:      "save",
				Usage:     "copy the data of a running cluster into FILE",
				ArgsUsage: "FILE",
				Description: `Asks the first endpoint that answers (any ready node, voter or observer) for a
consistent copy of its state machine at one revision, taken while writes go on,
and writes it to a temporary file beside FILE (FILE.*.tmp), renamed to FILE only
once it is complete and its SHA-256 verified; a failed or interrupted save
(Ctrl-C, SIGTERM) removes it. Needs the join secret (KVCTL_JOIN_SECRET) or a client
certificate, like membership changes. --timeout does not apply: the copy takes
as long as the data needs at the node's rate (--rate-mib).

Restore it into a new cluster with kvd --restore FILE (see the README).`,
				Flags: []cli.Flag{
					&cli.Uint64Flag{Name: "rate-mib", Usage: "most MiB per second the node sends (0: the node's default, 64)"},
				},
				Action: runSnapshotSave,
			},
			{
				Name:      "status",
				Usage:     "print a backup file's header and verify its checksum",
				ArgsUsage: "FILE",
				Action:    runSnapshotStatus,
			},
		},
	}
}

// snapshotInfo is what save and status print.
type snapshotInfo struct {
	File          string `json:"file"`
	FormatVersion int    `json:"format_version"`
	ClusterID     string `json:"cluster_id"`
	Revision      uint64 `json:"revision"`
	// KeyCount is nil (null) when unknown: files and nodes from before it
	// was counted.
	KeyCount  *uint64   `json:"key_count"`
	ReplicaID uint64    `json:"replica_id"`
	Created   time.Time `json:"created"`
	Bytes     int64     `json:"bytes"`
	Checksum  string    `json:"checksum"`
	Seconds   float64   `json:"seconds,omitempty"`
}

func (p *printer) snapshot(info snapshotInfo) error {
	if p.json {
		return p.encode(info)
	}
	keys := "unknown"
	if info.KeyCount != nil {
		keys = strconv.FormatUint(*info.KeyCount, 10)
	}
	fmt.Fprintf(p.w, "file: %s\nformat_version: %d\ncluster_id: %s\nrevision: %d\nkey_count: %s\nreplica_id: %d\ncreated: %s\nbytes: %d\nchecksum: %s\n",
		info.File, info.FormatVersion, orDash(info.ClusterID), info.Revision, keys, info.ReplicaID,
		info.Created.Format(time.RFC3339), info.Bytes, info.Checksum)
	if info.Seconds > 0 {
		fmt.Fprintf(p.w, "seconds: %.1f\nrate: %.1f MiB/s\n", info.Seconds, float64(info.Bytes)/(1<<20)/info.Seconds)
	}
	return nil
}

func runSnapshotStatus(c *cli.Context) error {
	if err := wantArgs(c, 1, "FILE"); err != nil {
		return err
	}
	path := c.Args().First()
	h, err := backup.Verify(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return newPrinter(c).snapshot(infoOf(path, h, st.Size()))
}

func infoOf(path string, h backup.Header, size int64) snapshotInfo {
	return snapshotInfo{File: path, FormatVersion: backup.Version, ClusterID: h.ClusterID, Revision: h.Revision,
		ReplicaID: h.ReplicaID, Created: h.Created, KeyCount: h.KeyCount, Bytes: size, Checksum: "sha256 ok"}
}

func runSnapshotSave(c *cli.Context) error {
	if err := wantArgs(c, 1, "FILE"); err != nil {
		return err
	}
	path := c.Args().First()
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return usageErrorf("kvctl snapshot save: %s is a directory: give a file name", path)
	}
	req := &kvdv1.BackupRequest{MaxBytesPerSecond: c.Uint64("rate-mib") << 20}
	// Ctrl-C or SIGTERM cancels the save, which then removes its temporary
	// file, rather than killing kvctl with the file half written.
	// A second one kills it as usual.
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	return withClient(c, func(_ context.Context, cl *client.Client) error {
		// The command's --timeout is for calls, not for copying the data.
		start := time.Now()
		h, size, err := saveFrom(ctx, cl, req, path, newProgress(c.App.ErrWriter))
		if err != nil && ctx.Err() != nil && c.Context.Err() == nil {
			return fmt.Errorf("interrupted: nothing was written to %s: %w", path, err)
		}
		if err != nil {
			return err
		}
		info := infoOf(path, h, size)
		info.Seconds = time.Since(start).Seconds()
		return newPrinter(c).snapshot(info)
	})
}

// saveFrom tries the endpoints in order until one streams a backup; a node
// that is not ready (or down) answers before it sends anything.
func saveFrom(ctx context.Context, cl *client.Client, req *kvdv1.BackupRequest, path string, prog *progress) (backup.Header, int64, error) {
	var err error
	for _, ep := range cl.Endpoints() {
		var raw client.RawClients
		if raw, err = cl.Raw(ep); err != nil {
			return backup.Header{}, 0, err
		}
		var stream *connect.ServerStreamForClient[kvdv1.BackupResponse]
		if stream, err = raw.Maintenance.Backup(ctx, connect.NewRequest(req)); err != nil {
			continue
		}
		var first *kvdv1.BackupHeader
		if first, err = receiveHeader(stream); err != nil {
			stream.Close()
			if connect.CodeOf(err) == connect.CodeUnavailable || connect.CodeOf(err) == connect.CodeResourceExhausted {
				continue
			}
			return backup.Header{}, 0, backupError(err)
		}
		h, size, err := writeBackup(ctx, stream, first, path, prog)
		stream.Close()
		return h, size, backupError(err)
	}
	return backup.Header{}, 0, backupError(err)
}

// backupError gives Connect errors the client's sentinels (exit codes).
func backupError(err error) error {
	switch connect.CodeOf(err) {
	case connect.CodePermissionDenied:
		return fmt.Errorf("%w: %v", client.ErrPermissionDenied, err)
	case connect.CodeUnavailable, connect.CodeResourceExhausted:
		return fmt.Errorf("%w: %v", client.ErrUnavailable, err)
	}
	return err
}

func receiveHeader(stream *connect.ServerStreamForClient[kvdv1.BackupResponse]) (*kvdv1.BackupHeader, error) {
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("the node ended the backup before sending anything")
	}
	h := stream.Msg().GetHeader()
	if h == nil {
		return nil, errors.New("the node's backup did not start with a header")
	}
	return h, nil
}

// writeBackup writes the stream into a temporary file of its own beside
// path (two saves to one path never share one), checks the node's sum and
// the file, then renames it to path. The temporary file is removed on any
// error, also when ctx ends.
func writeBackup(ctx context.Context, stream *connect.ServerStreamForClient[kvdv1.BackupResponse], first *kvdv1.BackupHeader, path string, prog *progress) (h backup.Header, size int64, err error) {
	h = backup.Header{ClusterID: first.GetClusterId(), Revision: first.GetRevision(), ReplicaID: first.GetReplicaId(),
		Created: time.UnixMilli(first.GetCreatedUnixMs()).UTC(), KeyCount: first.KeyCount}
	for _, f := range first.GetFiles() {
		h.Files = append(h.Files, backup.File{Name: f.GetName(), Size: int64(f.GetSize())})
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return h, 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := backup.NewWriter(bw, h)
	if err != nil {
		return h, 0, fmt.Errorf("the node's backup header: %w", err)
	}
	prog.total = h.PayloadSize()
	if err := copyPayload(stream, w, prog); err != nil {
		return h, 0, err
	}
	if err := finish(f, bw, w); err != nil {
		return h, 0, err
	}
	if _, err := backup.Verify(tmp); err != nil {
		return h, 0, fmt.Errorf("%s does not read back: %w", tmp, err)
	}
	if err := ctx.Err(); err != nil {
		return h, 0, err // interrupted while reading it back
	}
	if err := os.Rename(tmp, path); err != nil {
		return h, 0, err
	}
	return h, w.Size(), syncDir(filepath.Dir(path))
}

// copyPayload writes the data messages and checks the trailer's sum.
func copyPayload(stream *connect.ServerStreamForClient[kvdv1.BackupResponse], w *backup.Writer, prog *progress) error {
	var sum hash.Hash = sha256.New()
	for stream.Receive() {
		switch m := stream.Msg(); {
		case m.GetTrailer() != nil:
			if !bytes.Equal(m.GetTrailer().GetSha256(), sum.Sum(nil)) {
				return errors.New("the data does not match the node's SHA-256: it was damaged on the way; try again")
			}
			prog.done()
			return nil
		default:
			if _, err := w.Write(m.GetData()); err != nil {
				return fmt.Errorf("the node sent more data than its header announced: %w", err)
			}
			sum.Write(m.GetData())
			prog.add(len(m.GetData()))
		}
	}
	if err := stream.Err(); err != nil {
		return fmt.Errorf("backup interrupted: %w", err)
	}
	return errors.New("backup interrupted: the stream ended without its trailer")
}

func finish(f *os.File, bw *bufio.Writer, w *backup.Writer) error {
	if err := w.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// progress draws "copied / total, percent, rate" on a terminal, at most
// five times a second; it draws nothing when stderr is not a terminal.
type progress struct {
	w      io.Writer
	total  int64
	copied int64
	start  time.Time
	last   time.Time
}

func newProgress(w io.Writer) *progress {
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return &progress{w: w, start: time.Now()}
		}
	}
	return &progress{start: time.Now()}
}

func (p *progress) add(n int) {
	p.copied += int64(n)
	if p.w == nil || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.draw()
}

func (p *progress) draw() {
	const mib = 1 << 20
	pct := 100.0
	if p.total > 0 {
		pct = float64(p.copied) * 100 / float64(p.total)
	}
	rate := float64(p.copied) / mib / max(time.Since(p.start).Seconds(), 1e-3)
	fmt.Fprintf(p.w, "\r%8.1f / %.1f MiB  %3.0f%%  %6.1f MiB/s ", float64(p.copied)/mib, float64(p.total)/mib, pct, rate)
}

func (p *progress) done() {
	if p.w != nil {
		p.draw()
		fmt.Fprintln(p.w)
	}
}
