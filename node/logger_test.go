package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/lni/dragonboat/v4"
)

// dbRecorder keeps the level and message of every record it is given.
type dbRecorder struct {
	min  slog.Level
	mu   sync.Mutex
	logs []string // "LEVEL message"
}

func (r *dbRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= r.min }
func (r *dbRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, rec.Level.String()+" "+rec.Message)
	return nil
}
func (r *dbRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *dbRecorder) WithGroup(string) slog.Handler      { return r }

func (r *dbRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.logs
	r.logs = nil
	return out
}

// withDBRecorder points the Dragonboat adapter at a dbRecorder for one test.
func withDBRecorder(t *testing.T, min slog.Level) *dbRecorder {
	r := &dbRecorder{min: min}
	old := dbLogger.Load()
	dbLogger.Store(slog.New(r))
	t.Cleanup(func() { dbLogger.Store(old) })
	return r
}

// What a healthy cluster logs in normal operation (an election, a
// ReadIndex before a leader is known, the first stale read) is not a
// warning; real warnings stay warnings, and only the named logger's
// message is demoted.
func TestDragonboatLevels(t *testing.T) {
	r := withDBRecorder(t, slog.LevelDebug)
	desc := "[f:1,l:8,t:2,c:8,a:8] [1:3] t2"
	for _, tt := range []struct {
		pkg  string
		log  func(*dbAdapter)
		want string
	}{
		{"raft", func(a *dbAdapter) { a.Warningf("%s became candidate", desc) }, "INFO"},
		{"raft", func(a *dbAdapter) { a.Warningf("%s became PreVote candidate", desc) }, "INFO"},
		{"raft", func(a *dbAdapter) { a.Infof("%s became leader", desc) }, "INFO"},
		{"raft", func(a *dbAdapter) { a.Warningf("%s sent RequestVote to %s", desc, "n00002") }, "DEBUG"},
		{"raft", func(a *dbAdapter) { a.Warningf("%s received %d votes and %d rejections, quorum is %d", desc, 2, 0, 2) }, "DEBUG"},
		{"raft", func(a *dbAdapter) { a.Warningf("%s dropped ReadIndex, no leader", desc) }, "DEBUG"},
		{"raft", func(a *dbAdapter) { a.Warningf("%s dropped ReadIndex, not ready", desc) }, "DEBUG"},
		{"dragonboat", func(a *dbAdapter) {
			a.Warningf("StaleRead called, linearizability not guaranteed for stale read")
		}, "DEBUG"},
		// Real warnings and errors keep their level.
		{"raft", func(a *dbAdapter) { a.Warningf("%s has lost quorum", desc) }, "WARN"},
		{"raft", func(a *dbAdapter) { a.Warningf("%s dropped proposal, no leader", desc) }, "WARN"},
		{"transport", func(a *dbAdapter) { a.Warningf("%s became unreachable, affected %d nodes", "10.0.0.2:7100", 1) }, "WARN"},
		{"transport", func(a *dbAdapter) { a.Warningf("%s became candidate", desc) }, "WARN"}, // another logger
		{"rsm", func(a *dbAdapter) { a.Errorf("snapshot failed: %v", "disk full") }, "ERROR"},
		// Dragonboat's INFO is chatty: debug.
		{"rsm", func(a *dbAdapter) { a.Infof("%s saved snapshot %d", desc, 8) }, "DEBUG"},
		// Its DEBUG is below kvd's: not even at debug.
		{"raft", func(a *dbAdapter) { a.Debugf("%s tick", desc) }, ""},
	} {
		tt.log(&dbAdapter{pkg: tt.pkg})
		got := r.take()
		if tt.want == "" && len(got) != 0 {
			t.Errorf("%s: logged %q, want nothing", tt.pkg, got)
		}
		if tt.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tt.want+" ")) {
			t.Errorf("%s: logged %q, want one line at %s", tt.pkg, got, tt.want)
		}
	}
}

// At the default level (info) Dragonboat's chatter stays out, and a normal
// election shows as its milestones only.
func TestDragonboatElectionAtInfo(t *testing.T) {
	r := withDBRecorder(t, slog.LevelInfo)
	a := &dbAdapter{pkg: "raft"}
	desc := "[f:1,l:8,t:2,c:8,a:8] [1:3] t2"
	a.Warningf("%s became PreVote candidate", desc)
	a.Warningf("%s sent RequestPreVote to %s", desc, "n00002")
	a.Warningf("%s received %s from %s", desc, "RequestPreVoteResp", "n00002")
	a.Warningf("%s received %d preVotes and %d rejections, quorum is %d", desc, 2, 0, 2)
	a.Warningf("%s became candidate", desc)
	a.Warningf("%s cast vote from %s index %d term %d, log term: %d", desc, "n00001", 8, 3, 2)
	a.Warningf("%s received %d votes and %d rejections, quorum is %d", desc, 2, 0, 2)
	a.Infof("%s became leader", desc)
	a.Warningf("%s dropped read index, no leader", desc)
	(&dbAdapter{pkg: "rsm"}).Infof("%s saved snapshot %d", desc, 8)
	got := r.take()
	want := []string{"INFO " + desc + " became PreVote candidate", "INFO " + desc + " became candidate", "INFO " + desc + " became leader"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("logged:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Every message given another level is Dragonboat's own, word for word, in
// the package of its logger: a typo would leave it at WARN unnoticed.
func TestDragonboatLevelsNameRealMessages(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/lni/dragonboat/v4").Output()
	if err != nil {
		t.Fatalf("locate Dragonboat's source: %v", err)
	}
	root := strings.TrimSpace(string(out))
	dirs := map[string]string{"raft": "internal/raft", "dragonboat": "."}
	for m := range dragonboatLevels {
		dir, ok := dirs[m.pkg]
		if !ok {
			t.Errorf("%q: no source directory known for logger %q", m.format, m.pkg)
			continue
		}
		files, _ := filepath.Glob(filepath.Join(root, dir, "*.go"))
		found := false
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), strconv.Quote(m.format)) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("logger %q: %q is not in Dragonboat's %s", m.pkg, m.format, dir)
		}
	}
}

// Dragonboat formats errors into its messages itself, some with %+v
// ("failed to get snapshot chunks %+v"), which for its errors
// (github.com/cockroachdb/errors) is the stack of where they were made:
// the line shows their message only.
func TestDragonboatErrorsWithoutStacks(t *testing.T) {
	r := withDBRecorder(t, slog.LevelDebug)
	a := &dbAdapter{pkg: "transport"}
	a.Errorf("failed to get snapshot chunks %+v", dragonboat.ErrTimeout)
	a.Warningf("%s: %v, %d", "n1", fmt.Errorf("send: %w", dragonboat.ErrTimeout), 7)
	got := strings.Join(r.take(), "\n")
	want := "ERROR failed to get snapshot chunks timeout\nWARN n1: send: timeout, 7"
	if got != want {
		t.Fatalf("logged:\n%s\nwant:\n%s", got, want)
	}
}
