package statemachine

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

// testLogger logs to the test's output, so only failures print.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// openSM opens a state machine in dir on fs and returns it with the applied
// index Open reported. It is closed at the end of the test.
func openSM(t testing.TB, fs vfs.FS, dir string) (*StateMachine, uint64) {
	t.Helper()
	s, err := Open(dir, Config{FS: fs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	applied, err := s.Open(nil)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, applied
}

func putCmd(k, v string) Command {
	return Command{Ops: []Op{{Type: OpPut, Key: []byte(k), Value: []byte(v)}}}
}

// entry encodes cmds as the Raft entry at index.
func entry(index uint64, cmds ...Command) sm.Entry {
	return sm.Entry{Index: index, Cmd: EncodeCommands(nil, cmds)}
}

func mustUpdate(t testing.TB, s *StateMachine, ents ...sm.Entry) []sm.Entry {
	t.Helper()
	out, err := s.Update(ents)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	return out
}

func mustLookup[T any](t testing.TB, s *StateMachine, q any) T {
	t.Helper()
	r, err := s.Lookup(q)
	if err != nil {
		t.Fatalf("lookup %#v: %v", q, err)
	}
	return r.(T)
}

// dump renders the whole visible state: applied index, then every user and
// metadata key with its revisions. Two stores with equal dumps hold the
// same state.
func dump(t testing.TB, s *StateMachine) string {
	t.Helper()
	var b strings.Builder
	applied := mustLookup[uint64](t, s, AppliedQuery{})
	fmt.Fprintf(&b, "applied=%d\n", applied)
	for _, meta := range []bool{false, true} {
		r := mustLookup[RangeResult](t, s, RangeQuery{Meta: meta})
		if r.Revision != applied {
			t.Fatalf("range revision %d != applied %d", r.Revision, applied)
		}
		for _, kv := range r.KVs {
			fmt.Fprintf(&b, "%s\n", formatKV(kv, meta))
		}
	}
	return b.String()
}

func formatKV(kv KeyValue, meta bool) string {
	space := ""
	if meta {
		space = "meta "
	}
	return fmt.Sprintf("%s%s=%s create=%d mod=%d ver=%d", space, kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
}

// saveSnapshot returns the snapshot stream of s's current state.
func saveSnapshot(t testing.TB, s *StateMachine) []byte {
	t.Helper()
	p, err := s.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.SaveSnapshot(p, &buf, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// failingWriter fails every write with err after n bytes.
type failingWriter struct {
	n   int
	err error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, w.err
	}
	w.n -= len(p)
	return len(p), nil
}

var _ io.Writer = (*failingWriter)(nil)
