package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kvd-project/kvd/membership"
	"github.com/kvd-project/kvd/statemachine"
)

func TestDecodeMeta(t *testing.T) {
	want := membership.Meta{RaftAddr: "10.0.0.1:7170", APIAddr: "10.0.0.1:7070", Origin: membership.OriginJoin, TokenHash: "ab"}
	for _, tc := range []struct {
		name, key, value string
		err              string // "" = decodes to want (id 7)
	}{
		{"version 1 without the field (written before versions)", "member/7",
			`{"raft_addr":"10.0.0.1:7170","api_addr":"10.0.0.1:7070","origin":"join","token_hash":"ab"}`, ""},
		{"version 1", "member/7",
			`{"version":1,"raft_addr":"10.0.0.1:7170","api_addr":"10.0.0.1:7070","origin":"join","token_hash":"ab"}`, ""},
		{"unknown fields of the same version", "member/7",
			`{"version":1,"raft_addr":"10.0.0.1:7170","api_addr":"10.0.0.1:7070","origin":"join","token_hash":"ab","zone":"b"}`, ""},
		{"newer version", "member/7", `{"version":2,"raft_addr":"10.0.0.1:7170"}`, "version 2 is newer than this node reads (1)"},
		{"not JSON", "member/7", `raft_addr=10.0.0.1`, "invalid character"},
		{"key without an ID", "member/x", `{}`, "key is not member/<replica id>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, m, err := decodeMeta([]byte(tc.key), []byte(tc.value))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("decode: %v", err)
			case tc.err == "" && (id != 7 || m != want):
				t.Fatalf("decode = %d %+v, want 7 %+v", id, m, want)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("decode error = %v, want %q", err, tc.err)
			}
		})
	}
}

// What this version writes, this version and older ones (which decode the
// row straight into membership.Meta) read back.
func TestEncodeMetaIsReadByOldAndNew(t *testing.T) {
	m := membership.Meta{RaftAddr: "r:1", APIAddr: "a:2", Origin: membership.OriginBootstrap}
	b, err := encodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"version":1`) {
		t.Fatalf("encoded %s: no version", b)
	}
	var old membership.Meta
	if err := json.Unmarshal(b, &old); err != nil || old != m {
		t.Fatalf("an older reader gets %+v, %v; want %+v", old, err, m)
	}
	if _, got, err := decodeMeta([]byte("member/1"), b); err != nil || got != m {
		t.Fatalf("decode = %+v, %v; want %+v", got, err, m)
	}
}

// A row that cannot be read is left out of Metas and logged at ERROR once
// per row and revision, not on every read.
func TestMetasLogsABadRowOncePerRevision(t *testing.T) {
	defer goleak.VerifyNone(t)
	cfg := testConfig(t)
	logs := newErrorLog(cfg.Logger.Handler())
	cfg.Logger = slog.New(logs)
	n := startReady(t, cfg)
	defer n.Stop()
	put := func(key, value string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		op := statemachine.Op{Type: statemachine.OpMetaPut, Key: []byte(key), Value: []byte(value)}
		if _, err := n.Propose(ctx, []statemachine.Command{{Ops: []statemachine.Op{op}}}); err != nil {
			t.Fatal(err)
		}
	}
	put("member/7", `not json`)
	put("member/8", `{"version":2,"api_addr":"x:1"}`)
	put("member/9", `{"raft_addr":"r:9","api_addr":"a:9","origin":"join"}`)
	for range 3 {
		metas, err := n.Metas(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := metas[7]; ok || metas[8] != (membership.Meta{}) || metas[9].APIAddr != "a:9" {
			t.Fatalf("metas = %+v: want 9 only (7, 8 unreadable)", metas)
		}
	}
	if got := logs.keys(); got != "member/7 member/8" {
		t.Fatalf("errors logged for %q, want each bad row once", got)
	}
	put("member/7", `still not json`) // a new revision of the row
	if _, err := n.Metas(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := logs.keys(); got != "member/7 member/8 member/7" {
		t.Fatalf("errors logged for %q, want the rewritten row again", got)
	}
}

// errorLog records the "key" attribute of ERROR records (in every
// handler derived from it) and passes every record on.
type errorLog struct {
	slog.Handler
	rec *recorder
}

type recorder struct {
	mu   sync.Mutex
	seen []string
}

func newErrorLog(h slog.Handler) *errorLog { return &errorLog{h, &recorder{}} }

func (h *errorLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "key" {
				h.rec.mu.Lock()
				h.rec.seen = append(h.rec.seen, a.Value.String())
				h.rec.mu.Unlock()
			}
			return true
		})
	}
	return h.Handler.Handle(ctx, r)
}

func (h *errorLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &errorLog{h.Handler.WithAttrs(as), h.rec}
}

func (h *errorLog) WithGroup(name string) slog.Handler {
	return &errorLog{h.Handler.WithGroup(name), h.rec}
}

func (h *errorLog) keys() string {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	return strings.Join(h.rec.seen, " ")
}
