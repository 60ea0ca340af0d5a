package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/client"
	"github.com/kvd-project/kvd/internal/freeport"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// change is one write as its writer saw it: acknowledged (with the
// revision) or of unknown outcome (maybe applied, revision unknown).
type change struct {
	typ   client.EventType
	key   string
	value string
	rev   uint64
}

// watchWriters run puts and deletes of a few keys each under prefix,
// through clients that fail over, and record every write's outcome.
type watchWriters struct {
	mu      sync.Mutex
	acked   []change // event expected at rev
	noop    int      // acknowledged deletes of missing keys: no event
	unknown []change // outcome unknown: an event at most once
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startWatchWriters(t *testing.T, procs []*proc, prefix string, n int) *watchWriters {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watchWriters{cancel: cancel}
	for g := range n {
		var eps []string
		for i := range procs {
			eps = append(eps, procs[(g+i)%len(procs)].api)
		}
		cl := newWatchClient(t, eps...)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := 0; ctx.Err() == nil; i++ {
				w.write(ctx, cl, rng, fmt.Sprintf("%sg%d/k%d", prefix, g, rng.IntN(4)), fmt.Sprintf("g%d-%d", g, i))
			}
		}()
	}
	return w
}

// write does one put (or, one time in four, a delete) and records it.
func (w *watchWriters) write(ctx context.Context, cl *client.Client, rng *rand.Rand, key, value string) {
	c := change{typ: client.EventPut, key: key, value: value}
	var err error
	if rng.IntN(4) == 0 {
		c.typ, c.value = client.EventDelete, ""
		var r client.DeleteResult
		if r, err = cl.Delete(ctx, []byte(key)); err == nil && !r.Deleted {
			w.mu.Lock()
			w.noop++
			w.mu.Unlock()
			return
		}
		c.rev = r.Revision
	} else {
		var r client.PutResult
		r, err = cl.Put(ctx, []byte(key), []byte(value))
		c.rev = r.Revision
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err == nil:
		w.acked = append(w.acked, c)
	case client.OutcomeUnknown(err) || ctx.Err() != nil:
		w.unknown = append(w.unknown, c)
	}
}

func (w *watchWriters) stop() {
	w.cancel()
	w.wg.Wait()
}

func (w *watchWriters) ackedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func newWatchClient(t *testing.T, endpoints ...string) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Endpoints: endpoints, RequestTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// watchLog collects what one client.Watch delivered.
type watchLog struct {
	mu     sync.Mutex
	events []client.WatchEvent
	rev    uint64 // the last message's revision
	err    error  // the final message's error
	moved  chan struct{}
}

func startWatchLog(ctx context.Context, cl *client.Client, prefix string, from uint64) *watchLog {
	l := &watchLog{moved: make(chan struct{}, 1)}
	ch := cl.Watch(ctx, []byte(prefix), client.WithPrefix(), client.WithRevision(from), client.WithProgress(100*time.Millisecond))
	go func() {
		for r := range ch {
			l.mu.Lock()
			l.events = append(l.events, r.Events...)
			l.rev, l.err = max(l.rev, r.Revision), r.Err
			l.mu.Unlock()
			select {
			case l.moved <- struct{}{}:
			default:
			}
		}
	}()
	return l
}

// waitRevision waits until the watch has reported every change up to rev.
func (l *watchLog) waitRevision(t *testing.T, name string, rev uint64, timeout time.Duration) []client.WatchEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		reached, err, events := l.rev >= rev, l.err, append([]client.WatchEvent(nil), l.events...)
		l.mu.Unlock()
		if reached {
			return events
		}
		if err != nil {
			t.Fatalf("%s: watch ended at revision %d before %d: %v", name, l.rev, rev, err)
		}
		select {
		case <-l.moved:
		case <-deadline:
			t.Fatalf("%s: watch at revision %d after %s, want %d", name, l.rev, timeout, rev)
		}
	}
}

// checkEvents: events are in revision order without duplicates; every
// acknowledged write is there at its revision with its key, value and
// type; anything else is a write of unknown outcome, at most once.
func checkEvents(events []client.WatchEvent, acked, unknown []change, from uint64) error {
	seen := map[string]bool{}
	var prev uint64
	for i, e := range events {
		id := fmt.Sprintf("%d/%s", e.ModRevision, e.Key)
		if e.ModRevision < prev || e.ModRevision < from || seen[id] {
			return fmt.Errorf("event %d (%s %s at %d) out of order or repeated (previous revision %d)", i, e.Type, e.Key, e.ModRevision, prev)
		}
		seen[id], prev = true, e.ModRevision
	}
	byID := map[string]client.WatchEvent{}
	for _, e := range events {
		byID[fmt.Sprintf("%d/%s", e.ModRevision, e.Key)] = e
	}
	for _, c := range acked {
		id := fmt.Sprintf("%d/%s", c.rev, c.key)
		e, ok := byID[id]
		if !ok {
			return fmt.Errorf("acknowledged %s %s=%s at %d: no event", c.typ, c.key, c.value, c.rev)
		}
		if e.Type != c.typ || string(e.Value) != c.value {
			return fmt.Errorf("acknowledged %s %s=%s at %d: event %s %s=%s", c.typ, c.key, c.value, c.rev, e.Type, e.Key, e.Value)
		}
		delete(byID, id)
	}
	maybe := map[string]int{}
	for _, c := range unknown {
		maybe[fmt.Sprintf("%s %s=%s", c.typ, c.key, c.value)]++
	}
	for _, e := range byID {
		what := fmt.Sprintf("%s %s=%s", e.Type, e.Key, e.Value)
		if maybe[what] == 0 {
			return fmt.Errorf("event %s at %d: no such write (acknowledged or of unknown outcome)", what, e.ModRevision)
		}
		maybe[what]--
	}
	return nil
}

// checkFinal: the last event of every key says what a Range shows now.
func checkFinal(events []client.WatchEvent, kvs []client.KeyValue) error {
	last := map[string]client.WatchEvent{}
	for _, e := range events {
		last[string(e.Key)] = e
	}
	for _, kv := range kvs {
		e, ok := last[string(kv.Key)]
		if !ok || e.Type != client.EventPut || string(e.Value) != string(kv.Value) || e.ModRevision != kv.ModRevision {
			return fmt.Errorf("key %s=%s at %d: last event %+v", kv.Key, kv.Value, kv.ModRevision, e)
		}
		delete(last, string(kv.Key))
	}
	for k, e := range last {
		if e.Type != client.EventDelete {
			return fmt.Errorf("key %s: last event %s at %d, but the key is gone", k, e.Type, e.ModRevision)
		}
	}
	return nil
}

func describeWatchEvents(es []client.WatchEvent) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "\n  %d %s %s=%s", e.ModRevision, e.Type, e.Key, e.Value)
	}
	return b.String()
}

// TestWatchSurvivesSIGKILL: watchers on a prefix while writers put and
// delete, and a node is SIGKILLed: the watcher on it resumes on another
// node, and what every watcher received is exactly the sequence applied:
// each acknowledged write once, in order, with its key, value and type;
// the same events as a replay of the history afterwards; the last event
// of each key as a final Range shows it.
func TestWatchSurvivesSIGKILL(t *testing.T) {
	for _, victim := range []string{"serving follower", "leader"} {
		t.Run(strings.ReplaceAll(victim, " ", "_"), func(t *testing.T) {
			procs := startStatic(t, 3)
			leader := leaderIndex(t, procs)
			kill := (leader + 1) % 3
			if victim == "leader" {
				kill = leader
			}
			other := (kill + 1) % 3
			if other == leader && victim != "leader" {
				other = (kill + 2) % 3
			}
			runWatchKill(t, procs, kill, other)
		})
	}
}

// runWatchKill watches from procs[kill] (failing over to the others) and
// from procs[other], kills procs[kill] while writers run, and checks both.
func runWatchKill(t *testing.T, procs []*proc, kill, other int) {
	const prefix = "w/"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eps := []string{procs[kill].api, procs[(kill+1)%3].api, procs[(kill+2)%3].api}
	writer := newWatchClient(t, procs[other].api)
	start, err := writer.Put(ctx, []byte(prefix+"start"), []byte("0"))
	if err != nil {
		t.Fatal(err)
	}
	watched := startWatchLog(ctx, newWatchClient(t, eps...), prefix, start.Revision)
	survivor := startWatchLog(ctx, newWatchClient(t, procs[other].api), prefix, start.Revision)
	w := startWatchWriters(t, procs, prefix, 4)
	waitAcked(t, w, 200)
	t.Logf("SIGKILL %s after %d acknowledged writes", procs[kill].name, w.ackedCount())
	procs[kill].kill()
	waitAcked(t, w, w.ackedCount()+300)
	w.stop()
	acked := append([]change{{typ: client.EventPut, key: prefix + "start", value: "0", rev: start.Revision}}, w.acked...)
	t.Logf("%d writes acknowledged (%d deletes of missing keys among them), %d of unknown outcome", len(acked)+w.noop, w.noop, len(w.unknown))

	final, err := writer.Range(ctx, client.RangeOptions{Prefix: []byte(prefix)})
	if err != nil || final.More {
		t.Fatalf("final range: %v (more %v)", err, final != nil && final.More)
	}
	replay := startWatchLog(ctx, newWatchClient(t, procs[other].api), prefix, start.Revision)
	want := replay.waitRevision(t, "replay", final.Revision, 20*time.Second)
	for name, l := range map[string]*watchLog{"watcher on the killed node": watched, "watcher on a survivor": survivor} {
		got := l.waitRevision(t, name, final.Revision, 20*time.Second)
		got = upTo(got, final.Revision)
		if err := checkEvents(got, acked, w.unknown, start.Revision); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := checkFinal(got, final.KVs); err != nil {
			t.Errorf("%s against the final range: %v", name, err)
		}
		if g, r := describeWatchEvents(got), describeWatchEvents(upTo(want, final.Revision)); g != r {
			t.Errorf("%s: %d events differ from the replay's %d", name, len(got), len(want))
		}
	}
}

func upTo(events []client.WatchEvent, rev uint64) []client.WatchEvent {
	for i, e := range events {
		if e.ModRevision > rev {
			return events[:i]
		}
	}
	return events
}

// waitAcked waits for n acknowledged writes in all.
func waitAcked(t *testing.T, w *watchWriters, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for w.ackedCount() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes acknowledged after 30s, want %d", w.ackedCount(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A watch from a revision older than the history kept is refused with
// OutOfRange naming the oldest revision still available.
func TestWatchFromCompactedRevision(t *testing.T) {
	p := startBootstrap(t, "--watch-history", "10")
	cl := newWatchClient(t, p.api)
	ctx := context.Background()
	var first uint64
	for i := range 200 {
		r, err := cl.Put(ctx, []byte("k"), []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = r.Revision
		}
	}
	err := rawWatchErr(ctx, p, &kvdv1.WatchRequest{Key: []byte("k"), StartRevision: first})
	if connect.CodeOf(err) != connect.CodeOutOfRange || !strings.Contains(err.Error(), "oldest revision still available") {
		t.Fatalf("watch from %d with 10 revisions kept: %v (code %v)", first, err, connect.CodeOf(err))
	}
	r := <-cl.Watch(ctx, []byte("k"), client.WithRevision(first))
	if !errors.Is(r.Err, client.ErrCompacted) {
		t.Fatalf("client.Watch from %d: %+v", first, r)
	}
	t.Logf("%v", r.Err)
}

// A snapshot carries only the newest part of the history
// (--snapshot-history-bytes): a node that joined through one refuses a
// watch from before it with OutOfRange, and client.Watch takes those
// revisions from a node that still holds them.
func TestWatchOldRevisionsAfterSnapshotJoin(t *testing.T) {
	boot := startBootstrap(t, "--snapshot-entries", "20", "--compaction-overhead", "5", "--snapshot-history-bytes", "300")
	writer := newWatchClient(t, boot.api)
	ctx := context.Background()
	var first, last uint64
	for i := range 60 {
		r, err := writer.Put(ctx, []byte(fmt.Sprint("s/k", i)), []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = r.Revision
		}
		last = r.Revision
	}
	joiner := newJoiner(t, "kvd-joiner", []*proc{boot})
	joiner.start()
	joiner.waitReady(30 * time.Second)
	if !strings.Contains(joiner.logs(), "recovered from snapshot") {
		t.Fatalf("the joiner got no snapshot (its log says no %q): the test needs one", "recovered from snapshot")
	}
	err := rawWatchErr(ctx, joiner, &kvdv1.WatchRequest{Key: []byte("s/"), Prefix: true, StartRevision: first})
	if connect.CodeOf(err) != connect.CodeOutOfRange {
		t.Fatalf("watch on the joiner from %d: %v (code %v), want OutOfRange", first, err, connect.CodeOf(err))
	}
	got := startWatchLog(ctx, newWatchClient(t, joiner.api, boot.api), "s/", first).waitRevision(t, "watch from the joiner's endpoint first", last, 15*time.Second)
	if len(got) != 60 || got[0].ModRevision != first || got[59].ModRevision != last {
		t.Fatalf("watch from %d through the joiner, then boot: %d events:%s", first, len(got), describeWatchEvents(got))
	}
}

// rawWatchErr opens a watch on p and returns the error that ends it
// before its first message (nil if a message came).
func rawWatchErr(ctx context.Context, p *proc, req *kvdv1.WatchRequest) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := p.kv().Watch(ctx, connect.NewRequest(req))
	if err != nil {
		return err
	}
	defer stream.Close()
	if stream.Receive() {
		return nil
	}
	return stream.Err()
}

// A node that is still joining refuses a watch with Unavailable, and
// client.Watch resumes on the next endpoint; once joined, the observer
// serves watches too.
func TestWatchOnJoiningNode(t *testing.T) {
	boot := startBootstrap(t, "--voters", "1")
	// A joiner whose seed never answers stays in its join step.
	api := freeport.Addr(t)
	stuck := newProc(t, "kvd-joining", api, append([]string{"--data-dir", t.TempDir(), "--listen", api,
		"--raft-addr", freeport.Addr(t), "--join", freeport.Addr(t)}, fastFlags...)...)
	stuck.start()
	waitHealthz(t, stuck)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writer := newWatchClient(t, boot.api)
	r1, err := writer.Put(ctx, []byte("j/a"), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rawWatchErr(ctx, stuck, &kvdv1.WatchRequest{Key: []byte("j/"), Prefix: true, StartRevision: r1.Revision}); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("watch on a joining node: %v (code %v), want Unavailable", err, connect.CodeOf(err))
	}
	resumed := startWatchLog(ctx, newWatchClient(t, stuck.api, boot.api), "j/", r1.Revision)
	if got := resumed.waitRevision(t, "watch resumed past the joining node", r1.Revision, 10*time.Second); describeWatchEvents(got) != describeWatchEvents([]client.WatchEvent{{Type: client.EventPut, Key: []byte("j/a"), Value: []byte("1"), ModRevision: r1.Revision, Created: true}}) {
		t.Fatalf("watch via the next endpoint:%s", describeWatchEvents(got))
	}

	obs := newJoiner(t, "kvd-observer", []*proc{boot})
	obs.start()
	obs.waitReady(30 * time.Second)
	r2, err := writer.Put(ctx, []byte("j/b"), []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	got := startWatchLog(ctx, newWatchClient(t, obs.api), "j/", r1.Revision).waitRevision(t, "watch on the observer", r2.Revision, 10*time.Second)
	if len(got) != 2 || got[0].ModRevision != r1.Revision || got[1].ModRevision != r2.Revision {
		t.Fatalf("watch on the observer from %d:%s", r1.Revision, describeWatchEvents(got))
	}
	st, err := obs.status(ctx)
	if err != nil || st.Role != kvdv1.Role_ROLE_OBSERVER {
		t.Fatalf("the joiner is not an observer: %v %v", st, err)
	}
}

// waitHealthz waits until p's API port answers /healthz.
func waitHealthz(t *testing.T, p *proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := p.client.Get(p.scheme + p.api + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: /healthz did not answer within 30s", p.name)
}

// A node cut off from its quorum ends its watches with Unavailable and
// refuses new ones; once the quorum is back, client.Watch (with only that
// node to go to) picks up where it was, without loss or repeat.
func TestWatchOnCutOffNode(t *testing.T) {
	procs := startStatic(t, 3)
	a := procs[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r0, err := newWatchClient(t, a.api).Put(ctx, []byte("c/a"), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	watched := startWatchLog(ctx, newWatchClient(t, a.api), "c/", r0.Revision)
	watched.waitRevision(t, "watch before the cut", r0.Revision, 10*time.Second)
	raw, err := a.kv().Watch(ctx, connect.NewRequest(&kvdv1.WatchRequest{Key: []byte("c/"), Prefix: true, StartRevision: r0.Revision, ProgressIntervalMs: 100}))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if !raw.Receive() {
		t.Fatalf("raw watch: %v", raw.Err())
	}
	procs[1].kill()
	procs[2].kill()
	cut := time.Now()
	for raw.Receive() {
		if time.Since(cut) > 20*time.Second {
			t.Fatal("a node without its quorum still serves a watch after 20s")
		}
	}
	if connect.CodeOf(raw.Err()) != connect.CodeUnavailable {
		t.Fatalf("the watch on a cut-off node ended with %v, want Unavailable", raw.Err())
	}
	t.Logf("watch ended %s after the cut: %v", time.Since(cut).Round(10*time.Millisecond), raw.Err())
	if err := rawWatchErr(ctx, a, &kvdv1.WatchRequest{Key: []byte("c/"), Prefix: true, StartRevision: r0.Revision}); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("a new watch on a cut-off node: %v, want Unavailable", err)
	}
	procs[1].start()
	procs[2].start()
	for _, p := range procs {
		p.waitReady(30 * time.Second)
	}
	r1, err := newWatchClient(t, procs[1].api, procs[2].api).Put(ctx, []byte("c/b"), []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	got := watched.waitRevision(t, "watch after the quorum is back", r1.Revision, 20*time.Second)
	want := []client.WatchEvent{
		{Type: client.EventPut, Key: []byte("c/a"), Value: []byte("1"), ModRevision: r0.Revision},
		{Type: client.EventPut, Key: []byte("c/b"), Value: []byte("2"), ModRevision: r1.Revision},
	}
	if describeWatchEvents(upTo(got, r1.Revision)) != describeWatchEvents(want) {
		t.Fatalf("events:%s\nwant:%s", describeWatchEvents(got), describeWatchEvents(want))
	}
}
