// Package backup is kvd's backup file format: a small header, the files
// of a snapshot that Dragonboat exported, and a SHA-256 over the whole.
// kvctl writes it (snapshot save), reads its header (snapshot status), and
// kvd unpacks it (--restore). It imports only the standard library.
//
//	magic    "KVDBACKP"                 8 bytes
//	version  uint32, big-endian         (1)
//	hlen     uint32, big-endian         length of the header, ≤ 1 MiB
//	header   JSON (Header), hlen bytes
//	payload  the bytes of header.files, in that order
//	sum      SHA-256 over every byte before it, 32 bytes
//
// The version is outside the JSON so that a newer format is refused before
// anything else is read. Fields added to the header since are optional and
// do not change the version (readers ignore fields they do not know, and a
// file that lacks one says "unknown", not zero): key_count. Readers trust nothing before the sum matched:
// Unpack writes to a directory it removes on any error.
package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Version is the format version this package writes and reads.
const Version = 1

const (
	magic        = "KVDBACKP"
	maxHeaderLen = 1 << 20
	sumLen       = sha256.Size
	prefixLen    = len(magic) + 8
)

var (
	// ErrCorrupt: the file is truncated, altered or not a kvd backup.
	ErrCorrupt = errors.New("backup: corrupt file")
	// ErrVersion: the file was written in a newer format.
	ErrVersion = errors.New("backup: unsupported format version")
)

// Header describes a backup.
type Header struct {
	// ClusterID of the cluster it was taken from ("" if it had none yet).
	ClusterID string `json:"cluster_id"`
	// Revision is the Raft index the snapshot was taken at: it holds every
	// write acknowledged with this revision or a lower one, and none above.
	Revision uint64 `json:"revision"`
	// ReplicaID of the node that took it.
	ReplicaID uint64    `json:"replica_id"`
	Created   time.Time `json:"created"`
	// KeyCount is the number of keys in the backup; nil when unknown
	// (files written before it was counted, or a node that did not send it).
	KeyCount *uint64 `json:"key_count,omitempty"`
	// Files of the exported snapshot, in payload order.
	Files []File `json:"files"`
}

// File is one file of the payload.
type File struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// PayloadSize is the size of the payload.
func (h Header) PayloadSize() int64 {
	var n int64
	for _, f := range h.Files {
		n += f.Size
	}
	return n
}

// validate checks what a reader must not trust: file names are plain
// names (Unpack creates them), sizes are not negative.
func (h Header) validate() error {
	if len(h.Files) == 0 {
		return fmt.Errorf("%w: the header lists no files", ErrCorrupt)
	}
	seen := map[string]bool{}
	for _, f := range h.Files {
		if f.Name == "" || f.Name != filepath.Base(f.Name) || strings.HasPrefix(f.Name, ".") || strings.ContainsAny(f.Name, `/\`) || seen[f.Name] {
			return fmt.Errorf("%w: bad file name %q in the header", ErrCorrupt, f.Name)
		}
		if f.Size < 0 {
			return fmt.Errorf("%w: negative size of %s", ErrCorrupt, f.Name)
		}
		seen[f.Name] = true
	}
	return nil
}

// Writer writes a backup: the header at once, then the payload through
// Write, then the sum at Close.
type Writer struct {
	w       io.Writer
	sum     hash.Hash
	left    int64
	written int64
}

// NewWriter writes the magic, version and header to w.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	js, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	bw := &Writer{w: w, sum: sha256.New(), left: h.PayloadSize()}
	prefix := make([]byte, 0, prefixLen+len(js))
	prefix = append(prefix, magic...)
	prefix = binary.BigEndian.AppendUint32(prefix, Version)
	prefix = binary.BigEndian.AppendUint32(prefix, uint32(len(js)))
	prefix = append(prefix, js...)
	if _, err := bw.write(prefix); err != nil {
		return nil, err
	}
	return bw, nil
}

func (w *Writer) write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.sum.Write(p[:n])
	w.written += int64(n)
	return n, err
}

// Write adds payload bytes; more than the header announced is an error.
func (w *Writer) Write(p []byte) (int, error) {
	if int64(len(p)) > w.left {
		return 0, fmt.Errorf("backup: %d payload bytes more than the header announced", int64(len(p))-w.left)
	}
	n, err := w.write(p)
	w.left -= int64(n)
	return n, err
}

// Close writes the sum; the payload must be complete. It does not close
// the underlying writer.
func (w *Writer) Close() error {
	if w.left != 0 {
		return fmt.Errorf("backup: payload is %d bytes short of the header's sizes", w.left)
	}
	n, err := w.w.Write(w.sum.Sum(nil))
	w.written += int64(n)
	return err
}

// Sum is the SHA-256 the file ends with (valid after Close).
func (w *Writer) Sum() []byte { return w.sum.Sum(nil) }

// Size is the number of bytes written so far (the whole file after Close).
func (w *Writer) Size() int64 { return w.written }

// readHeader reads the magic, version and header through sum.
func readHeader(r io.Reader, sum hash.Hash) (Header, error) {
	prefix := make([]byte, prefixLen)
	if _, err := io.ReadFull(r, prefix); err != nil {
		return Header{}, fmt.Errorf("%w: too short for a kvd backup (%v)", ErrCorrupt, err)
	}
	if string(prefix[:len(magic)]) != magic {
		return Header{}, fmt.Errorf("%w: not a kvd backup (it does not start with %q)", ErrCorrupt, magic)
	}
	if v := binary.BigEndian.Uint32(prefix[len(magic):]); v != Version {
		return Header{}, fmt.Errorf("%w: the file has format version %d, this build reads version %d: use a kvd release that writes it", ErrVersion, v, Version)
	}
	hlen := binary.BigEndian.Uint32(prefix[len(magic)+4:])
	if hlen > maxHeaderLen {
		return Header{}, fmt.Errorf("%w: header length %d", ErrCorrupt, hlen)
	}
	js := make([]byte, hlen)
	if _, err := io.ReadFull(r, js); err != nil {
		return Header{}, fmt.Errorf("%w: truncated header (%v)", ErrCorrupt, err)
	}
	sum.Write(prefix)
	sum.Write(js)
	var h Header
	dec := json.NewDecoder(bytes.NewReader(js))
	if err := dec.Decode(&h); err != nil {
		return Header{}, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	return h, h.validate()
}

// checkSum reads the trailing sum and what follows it: exactly nothing.
func checkSum(r io.Reader, sum hash.Hash) error {
	want := make([]byte, sumLen)
	if _, err := io.ReadFull(r, want); err != nil {
		return fmt.Errorf("%w: truncated: the payload or the checksum is missing (%v)", ErrCorrupt, err)
	}
	if n, _ := io.Copy(io.Discard, r); n > 0 {
		return fmt.Errorf("%w: %d bytes after the checksum", ErrCorrupt, n)
	}
	if !bytes.Equal(want, sum.Sum(nil)) {
		return fmt.Errorf("%w: SHA-256 mismatch: the file was altered or damaged", ErrCorrupt)
	}
	return nil
}

// Verify reads the whole file at path and checks its header and sum. A
// header that could be read is returned with a payload or sum error.
func Verify(path string) (Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	sum := sha256.New()
	h, err := readHeader(r, sum)
	if err != nil {
		return Header{}, err
	}
	if n, err := io.CopyN(sum, r, h.PayloadSize()); err != nil {
		return h, fmt.Errorf("%w: truncated payload: %d of %d bytes (%v)", ErrCorrupt, n, h.PayloadSize(), err)
	}
	return h, checkSum(r, sum)
}

// Unpack verifies the file at path while it writes its files into dir,
// which must not exist. On any error dir is removed.
func Unpack(path, dir string) (h Header, err error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	sum := sha256.New()
	if h, err = readHeader(r, sum); err != nil {
		return Header{}, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return Header{}, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	for _, file := range h.Files {
		if err := unpackFile(io.TeeReader(r, sum), filepath.Join(dir, file.Name), file.Size); err != nil {
			return Header{}, err
		}
	}
	return h, checkSum(r, sum)
}

func unpackFile(r io.Reader, path string, size int64) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if n, err := io.CopyN(out, r, size); err != nil {
		out.Close()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: truncated payload: %s has %d of %d bytes", ErrCorrupt, filepath.Base(path), n, size)
		}
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
