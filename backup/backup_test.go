package backup

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeTestFile writes a backup of two files and returns its path and bytes.
func writeTestFile(t *testing.T) (string, []byte) {
	t.Helper()
	a, b := bytes.Repeat([]byte("a"), 1000), []byte("metadata")
	h := Header{ClusterID: "c1", Revision: 42, ReplicaID: 7, Created: time.Unix(1700000000, 0).UTC(),
		Files: []File{{Name: "snapshot-000000000000002A.gbsnap", Size: int64(len(a))}, {Name: "snapshot.metadata", Size: int64(len(b))}}}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{a[:300], a[300:], b} {
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "b.kvdb")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	path, _ := writeTestFile(t)
	h, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	if h.Revision != 42 || h.ClusterID != "c1" || h.PayloadSize() != 1008 {
		t.Fatalf("header %+v", h)
	}
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := Unpack(path, dir); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "snapshot.metadata"))
	if err != nil || string(got) != "metadata" {
		t.Fatalf("unpacked %q, %v", got, err)
	}
}

// Every flipped byte and every truncation is refused, and Unpack leaves
// nothing behind.
func TestCorruptionRefused(t *testing.T) {
	path, good := writeTestFile(t)
	check := func(name string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(path); err == nil {
			t.Fatalf("%s: Verify accepted it", name)
		}
		dir := filepath.Join(t.TempDir(), "out")
		if _, err := Unpack(path, dir); err == nil {
			t.Fatalf("%s: Unpack accepted it", name)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: Unpack left %s behind", name, dir)
		}
	}
	for i := 0; i < len(good); i += 7 {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		check("flip", b)
	}
	for _, n := range []int{0, 5, prefixLen, prefixLen + 10, len(good) - sumLen - 1, len(good) - 1} {
		check("truncate", good[:n])
	}
	check("trailing bytes", append(bytes.Clone(good), 0))
}

func TestNewerVersionRefused(t *testing.T) {
	path, good := writeTestFile(t)
	b := bytes.Clone(good)
	binary.BigEndian.PutUint32(b[len(magic):], Version+1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(path); !errors.Is(err, ErrVersion) {
		t.Fatalf("got %v, want ErrVersion", err)
	}
}

func TestBadNamesRefused(t *testing.T) {
	for _, name := range []string{"", "../x", "a/b", ".hidden", `a\b`} {
		h := Header{Files: []File{{Name: name, Size: 1}}}
		if _, err := NewWriter(&bytes.Buffer{}, h); !errors.Is(err, ErrCorrupt) {
			t.Errorf("name %q: got %v", name, err)
		}
	}
	h := Header{Files: []File{{Name: "a", Size: 1}, {Name: "a", Size: 1}}}
	if _, err := NewWriter(&bytes.Buffer{}, h); err == nil {
		t.Error("duplicate names accepted")
	}
}

// The key count round-trips, and a file written before the header had one
// (testdata, written by that code) still reads, its count unknown (nil).
func TestKeyCount(t *testing.T) {
	keys := uint64(12345)
	h := Header{ClusterID: "c1", Revision: 42, KeyCount: &keys, Files: []File{{Name: "a", Size: 3}}}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "b.kvdb")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.KeyCount == nil || *got.KeyCount != keys {
		t.Fatalf("key count %v, want %d", got.KeyCount, keys)
	}
	if got, err = Unpack(path, filepath.Join(t.TempDir(), "out")); err != nil || got.KeyCount == nil || *got.KeyCount != keys {
		t.Fatalf("unpack: key count %v, %v", got.KeyCount, err)
	}

	old := filepath.Join("testdata", "v1-before-key-count.kvdb")
	got, err = Verify(old)
	if err != nil {
		t.Fatalf("a file without a key count: %v", err)
	}
	if got.KeyCount != nil || got.Revision != 42 {
		t.Fatalf("a file without a key count: %+v", got)
	}
	if _, err := Unpack(old, filepath.Join(t.TempDir(), "old")); err != nil {
		t.Fatal(err)
	}
}
