package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/certs"
	"github.com/kvd-project/kvd/internal/freeport"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

const backupSecret = "backup-secret"

// ack is a write the cluster acknowledged.
type ack struct {
	value string
	rev   uint64
}

// ackLog records acknowledged puts per key, and keys whose last write's
// outcome is unknown.
type ackLog struct {
	mu        sync.Mutex
	acks      map[string][]ack
	uncertain map[string]bool
}

// expected is the state as of revision rev: per key, its last
// acknowledged put at or below rev.
func (l *ackLog) expected(rev uint64) map[string]ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]ack{}
	for k, as := range l.acks {
		for _, a := range as {
			if a.rev <= rev && a.rev >= out[k].rev {
				out[k] = a
			}
		}
	}
	return out
}

// writeLoad puts keys from writers goroutines until stop is closed: new
// keys, and overwrites of earlier ones (their mod revisions change).
func writeLoad(p *proc, writers int, stop <-chan struct{}) (*ackLog, *sync.WaitGroup) {
	l := &ackLog{acks: map[string][]ack{}, uncertain: map[string]bool{}}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%05d", w, i%500) // overwrites after 500
				val := fmt.Sprintf("v%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := p.kv().Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte(key), Value: []byte(val)}))
				cancel()
				l.mu.Lock()
				if err != nil {
					l.uncertain[key] = true
				} else {
					l.acks[key] = append(l.acks[key], ack{val, resp.Msg.Revision})
				}
				l.mu.Unlock()
			}
		}()
	}
	return l, &wg
}

// kvctlEnv runs kvctl with env and returns its output and exit code.
func kvctlEnv(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin.kvctl, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("kvctl %v: %v", args, err)
	}
	return string(out), 0
}

// restoreRefused runs kvd --restore file into dir and expects it to exit
// with an error mentioning want.
func restoreRefused(t *testing.T, file, dir, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.kvd, "--data-dir", dir, "--restore", file,
		"--listen", freeport.Addr(t), "--raft-addr", freeport.Addr(t), "--rtt", "10ms")
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("restore of %s into %s was not refused (err %v):\n%s", filepath.Base(file), dir, err, out)
	}
	if !strings.Contains(string(out), want) {
		t.Fatalf("restore of %s: the error does not say %q:\n%s", filepath.Base(file), want, out)
	}
}

// allKeys reads every user key on p locally (serializable).
func allKeys(t *testing.T, p *proc) map[string]*kvdv1.KeyValue {
	t.Helper()
	out := map[string]*kvdv1.KeyValue{}
	var token []byte
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := p.kv().Range(ctx, connect.NewRequest(&kvdv1.RangeRequest{
			Start: []byte{0}, PageToken: token, Consistency: kvdv1.Consistency_CONSISTENCY_SERIALIZABLE}))
		cancel()
		if err != nil {
			t.Fatalf("range on %s: %v", p.name, err)
		}
		for _, kv := range resp.Msg.Kvs {
			out[string(kv.Key)] = kv
		}
		if !resp.Msg.More {
			return out
		}
		token = resp.Msg.NextPageToken
	}
}

// TestBackupRestore saves a backup while writes go on, refuses broken
// files and a data dir with state, restores it into a new cluster of three
// (one restored, two joined), and compares every key, value and mod
// revision with what the old cluster acknowledged at or before the
// backup's revision.
func TestBackupRestore(t *testing.T) {
	old := startBootstrap(t, "--join-secret", backupSecret)
	stop := make(chan struct{})
	log, writers := writeLoad(old, 4, stop)
	time.Sleep(time.Second) // some writes before the backup, and during it

	file := filepath.Join(t.TempDir(), "kvd.backup")
	ep := "--endpoints=" + old.api
	if out, code := kvctlEnv(t, nil, ep, "snapshot", "save", file); code != 7 {
		t.Fatalf("a backup without the secret: exit %d, want 7 (permission denied):\n%s", code, out)
	}
	if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused backup left %s", file)
	}
	out, code := kvctlEnv(t, []string{"KVCTL_JOIN_SECRET=" + backupSecret}, ep, "-o", "json", "snapshot", "save", file)
	if code != 0 {
		t.Fatalf("snapshot save: exit %d:\n%s", code, out)
	}
	time.Sleep(500 * time.Millisecond) // writes after the backup must not be restored
	close(stop)
	writers.Wait()
	var info struct {
		Revision uint64  `json:"revision"`
		KeyCount *uint64 `json:"key_count"`
		Bytes    int64   `json:"bytes"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.Revision == 0 || info.KeyCount == nil {
		t.Fatalf("snapshot save output %q: %v", out, err)
	}
	if out, code := kvctlEnv(t, nil, "snapshot", "status", file); code != 0 || !strings.Contains(out, fmt.Sprintf("revision: %d", info.Revision)) ||
		!strings.Contains(out, fmt.Sprintf("key_count: %d\n", *info.KeyCount)) {
		t.Fatalf("snapshot status: exit %d:\n%s", code, out)
	}
	refuseBadRestores(t, file)
	saveFromObserver(t, old, info.Revision)

	api := freeport.Addr(t)
	restored := newProc(t, "kvd-restored", api, append([]string{"--data-dir", t.TempDir(), "--listen", api,
		"--raft-addr", freeport.Addr(t), "--join-secret", backupSecret, "--restore", file}, fastFlags...)...)
	restored.start()
	restored.waitReady(60 * time.Second)
	joiners := []*proc{newJoiner(t, "kvd-j1", []*proc{restored}, "--join-secret", backupSecret),
		newJoiner(t, "kvd-j2", []*proc{restored}, "--join-secret", backupSecret)}
	for _, j := range joiners {
		j.start()
	}
	waitShape(t, restored, 3, 0, 60*time.Second)

	want := log.expected(info.Revision)
	if len(want) == 0 {
		t.Fatal("no write was acknowledged before the backup: the comparison would prove nothing")
	}
	for _, p := range append([]*proc{restored}, joiners...) {
		p.waitReady(30 * time.Second)
		compareRestored(t, p, want, log.uncertain, info.Revision)
	}
	// The restored keys are exactly those at the backup's revision.
	if got := uint64(len(allKeys(t, restored))); got != *info.KeyCount {
		t.Fatalf("the backup's header counts %d keys, the restored node holds %d", *info.KeyCount, got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := restored.kv().Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte("after-restore"), Value: []byte("x")}))
	if err != nil || resp.Msg.Revision <= info.Revision {
		t.Fatalf("a write to the restored cluster: %v, revision %d; want one above the backup's %d", err, resp.Msg.GetRevision(), info.Revision)
	}
	// Later starts are plain restarts (without --restore).
	if err := restored.stop(); err != nil {
		t.Fatal(err)
	}
	restored.args = slices.DeleteFunc(restored.args, func(a string) bool { return a == "--restore" || a == file })
	restored.start()
	restored.waitReady(60 * time.Second)
	want["after-restore"] = ack{"x", resp.Msg.Revision}
	compareRestored(t, restored, want, log.uncertain, resp.Msg.Revision)
	t.Logf("backup: revision %d, %d bytes, %d keys in its header, %d keys compared on 3 nodes", info.Revision, info.Bytes, *info.KeyCount, len(want))
}

// saveFromObserver joins an observer to old (--voters 1 keeps it one) and
// saves a backup from it: any ready node serves one.
func saveFromObserver(t *testing.T, old *proc, atLeast uint64) {
	t.Helper()
	obs := newJoiner(t, "kvd-observer", []*proc{old}, "--join-secret", backupSecret, "--voters", "1")
	obs.start()
	obs.waitReady(60 * time.Second)
	waitShape(t, old, 1, 1, 30*time.Second)
	file := filepath.Join(t.TempDir(), "observer.backup")
	out, code := kvctlEnv(t, []string{"KVCTL_JOIN_SECRET=" + backupSecret}, "--endpoints="+obs.api, "-o", "json", "snapshot", "save", file)
	var info struct {
		Revision  uint64 `json:"revision"`
		ReplicaID uint64 `json:"replica_id"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.Revision < atLeast {
		t.Fatalf("snapshot save from an observer: exit %d, revision %d (want ≥ %d):\n%s", code, info.Revision, atLeast, out)
	}
	if err := obs.stop(); err != nil {
		t.Fatal(err)
	}
}

// compareRestored checks p's keys against want: each key with its value
// and mod revision, nothing written after rev, nothing extra.
func compareRestored(t *testing.T, p *proc, want map[string]ack, uncertain map[string]bool, rev uint64) {
	t.Helper()
	got := allKeys(t, p)
	for k, w := range want {
		if uncertain[k] {
			continue
		}
		g, ok := got[k]
		if !ok || string(g.Value) != w.value || g.ModRevision != w.rev {
			t.Fatalf("%s: key %s = %v, want %q at mod revision %d", p.name, k, g, w.value, w.rev)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok && !uncertain[k] {
			t.Fatalf("%s: key %s (mod revision %d) was not acknowledged at or before the backup's revision %d", p.name, k, g.ModRevision, rev)
		}
	}
}

// refuseBadRestores: a damaged file, a truncated one, one of a newer
// format version, and a data dir with state are refused, and nothing is
// written.
func refuseBadRestores(t *testing.T, file string) {
	t.Helper()
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	variant := func(name string, edit func([]byte) []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, edit(bytes.Clone(good)), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	flipped := variant("flipped", func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b })
	truncated := variant("truncated", func(b []byte) []byte { return b[:len(b)-100] })
	newer := variant("newer", func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], 2); return b })
	for file, want := range map[string]string{flipped: "SHA-256 mismatch", truncated: "truncated", newer: "format version 2"} {
		target := filepath.Join(dir, "data-"+filepath.Base(file))
		restoreRefused(t, file, target, want)
		if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a refused restore of %s left %s behind", filepath.Base(file), target)
		}
	}
	used := filepath.Join(dir, "used")
	if err := os.MkdirAll(used, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(used, "identity.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	restoreRefused(t, file, used, "holds a node's state")
	if entries, _ := os.ReadDir(used); len(entries) != 1 {
		t.Fatalf("a refused restore into a data dir with state changed it: %v", entries)
	}
}

// backupMB is how much data TestBackupFigures loads: 32 MiB keeps it short
// in CI; KVD_E2E_BACKUP_MB=200 gives the README's figures.
func backupMB(t *testing.T) int {
	if s := os.Getenv("KVD_E2E_BACKUP_MB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("KVD_E2E_BACKUP_MB=%q: want a positive number", s)
		}
		return n
	}
	return 32
}

// putLatencies puts one key at a time on p until stop is closed and
// returns the latencies.
func putLatencies(t *testing.T, p *proc, stop <-chan struct{}) func() []time.Duration {
	done := make(chan []time.Duration, 1)
	go func() {
		var lat []time.Duration
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- lat
				return
			default:
			}
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := p.kv().Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: fmt.Appendf(nil, "probe-%d", i%100), Value: []byte("x")}))
			cancel()
			if err != nil {
				t.Errorf("probe put: %v", err)
			}
			lat = append(lat, time.Since(start))
		}
	}()
	return func() []time.Duration { return <-done }
}

func p99(lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100]
}

// saveTimed runs snapshot save with extra flags while a probe measures put
// latency; it returns the seconds the save took and the probe's p99.
func saveTimed(t *testing.T, p *proc, file string, extra ...string) (float64, time.Duration, int) {
	t.Helper()
	stop := make(chan struct{})
	lat := putLatencies(t, p, stop)
	start := time.Now()
	args := append([]string{"--endpoints=" + p.api, "snapshot", "save"}, extra...)
	out, code := kvctlEnv(t, []string{"KVCTL_JOIN_SECRET=" + backupSecret}, append(args, file)...)
	secs := time.Since(start).Seconds()
	close(stop)
	l := lat()
	if code != 0 {
		t.Fatalf("snapshot save: exit %d:\n%s", code, out)
	}
	return secs, p99(l), len(l)
}

// TestBackupFigures measures what the README reports: seconds per GB to
// save and to restore (until the restored node is ready), and the p99 of
// sequential puts during a save against without one.
func TestBackupFigures(t *testing.T) {
	mb := backupMB(t)
	p := startBootstrap(t, "--join-secret", backupSecret)
	loadStart := time.Now()
	load(t, p, mb*256, 4096, 64)
	t.Logf("loaded %d MiB (%d keys of 4 KiB) in %.1fs", mb, mb*256, time.Since(loadStart).Seconds())

	stop := make(chan struct{})
	lat := putLatencies(t, p, stop)
	time.Sleep(3 * time.Second)
	close(stop)
	idle := lat()
	dir := t.TempDir()
	file := filepath.Join(dir, "figures.backup")
	secs, during, n := saveTimed(t, p, file)
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	gb := float64(st.Size()) / (1 << 30)
	unbounded := filepath.Join(dir, "unbounded.backup")
	usecs, uduring, un := saveTimed(t, p, unbounded, "--rate-mib", "100000")

	api := freeport.Addr(t)
	r := newProc(t, "kvd-restored", api, append([]string{"--data-dir", filepath.Join(dir, "restored"), "--listen", api,
		"--raft-addr", freeport.Addr(t), "--join-secret", backupSecret, "--restore", file}, fastFlags...)...)
	rstart := time.Now()
	r.start()
	r.waitReady(10 * time.Minute)
	rsecs := time.Since(rstart).Seconds()
	if got := countKeys(t, r, "key-"); got != mb*256 {
		t.Fatalf("restored %d keys, want %d", got, mb*256)
	}
	t.Logf("backup of %.0f MiB: save %.1fs (%.0f s/GB) at the default rate, %.1fs (%.0f s/GB) unbounded; restore until ready %.1fs (%.0f s/GB)",
		float64(st.Size())/(1<<20), secs, secs/gb, usecs, usecs/gb, rsecs, rsecs/gb)
	t.Logf("put p99: %v idle (%d puts), %v during a default-rate save (%d puts), %v during an unbounded save (%d puts)",
		p99(idle), len(idle), during, n, uduring, un)
}

// With --client-cert-auth a backup passes with a certificate of the
// cluster CA and no secret; a client without one is refused.
func TestBackupOverTLSWithClientCert(t *testing.T) {
	ca := newTestCA(t)
	p := startTLSBootstrap(t, ca, "admin", "--client-cert-auth")
	cert, key := ca.issue("admin")
	cacert := filepath.Join(ca.dir, certs.CACertFile)
	file := filepath.Join(t.TempDir(), "tls.backup")
	ep := "--endpoints=" + p.api
	if out, code := kvctlEnv(t, nil, ep, "--cacert", cacert, "snapshot", "save", file); code == 0 || !strings.Contains(out, "client certificate") {
		t.Fatalf("a backup without a client certificate: exit %d:\n%s", code, out)
	}
	out, code := kvctlEnv(t, nil, ep, "--cacert", cacert, "--cert", cert, "--key", key, "snapshot", "save", file)
	if code != 0 {
		t.Fatalf("a backup with the admin certificate: exit %d:\n%s", code, out)
	}
	if out, code := kvctlEnv(t, nil, "snapshot", "status", file); code != 0 {
		t.Fatalf("snapshot status: exit %d:\n%s", code, out)
	}
}
