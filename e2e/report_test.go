package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/anishathalye/porcupine"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// report is the one JSON line every scenario prints (and appends to
// artifacts/fault-report.jsonl).
type report struct {
	Scenario string `json:"scenario"`
	// Ops is every operation of the checked workload: OK (answered, a CAS
	// whose compare failed included), Failed (definitely not applied, or a
	// read that returned an error) and Unknown (a write whose outcome the
	// client cannot know; in the history with no return).
	Ops           int64    `json:"ops"`
	OK            int64    `json:"ok"`
	Failed        int64    `json:"failed"`
	Unknown       int64    `json:"unknown"`
	CompareFailed int64    `json:"cas_compare_failed"`
	History       int      `json:"history"` // operations checked by porcupine
	Faults        []string `json:"faults"`
	Linearizable  string   `json:"linearizable"` // yes, no, or timeout
	// The unique-key stream: acknowledged puts, those not readable at the
	// end, and puts that failed or had an unknown outcome.
	UniqueAcked   int     `json:"unique_acked"`
	Lost          int     `json:"lost_acknowledged_writes"`
	UniqueFailed  int     `json:"unique_failed"`
	UniqueUnknown int     `json:"unique_unknown"`
	Seconds       float64 `json:"seconds"`
	CheckSeconds  float64 `json:"check_seconds"`
	Visualization string  `json:"visualization,omitempty"`
}

// finish stops the workload, reads the keyspace once more, checks the
// history and the unique keys, prints the report and fails the test on a
// violation or a lost write.
func (w *workload) finish() report {
	t := w.c.t
	t.Helper()
	w.stop()
	w.finalReads()
	lost, lostErr := w.lostWrites()

	r := report{
		Scenario: w.scenario,
		OK:       w.n.ok.Load(), Failed: w.n.failed.Load(), Unknown: w.n.unknown.Load(),
		CompareFailed: w.n.compareFailed.Load(),
		Seconds:       time.Since(w.start).Round(100 * time.Millisecond).Seconds(),
	}
	r.Ops = r.OK + r.Failed + r.Unknown
	for _, f := range w.faults {
		r.Faults = append(r.Faults, fmt.Sprintf("+%.1fs %s", f.at.Seconds(), f.what))
	}
	w.u.mu.Lock()
	r.UniqueAcked, r.UniqueFailed, r.UniqueUnknown = len(w.u.acked), w.u.failed, w.u.unknown
	w.u.mu.Unlock()
	r.Lost = len(lost)

	hist, dupErr := w.history()
	r.History = len(hist)
	checkStart := time.Now()
	res := porcupine.CheckOperationsTimeout(kvModel, hist, 3*time.Minute)
	r.CheckSeconds = time.Since(checkStart).Round(10 * time.Millisecond).Seconds()
	switch res {
	case porcupine.Ok:
		r.Linearizable = "yes"
	case porcupine.Illegal:
		r.Linearizable = "no"
		r.Visualization = w.visualize(hist)
	default:
		r.Linearizable = "timeout"
	}

	line, _ := json.Marshal(r)
	t.Log(string(line))
	if err := os.MkdirAll(artifacts, 0o755); err == nil {
		if f, err := os.OpenFile(filepath.Join(artifacts, "fault-report.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			f.Write(append(line, '\n'))
			f.Close()
		}
	}

	if dupErr != nil {
		t.Errorf("%v", dupErr)
	}
	switch {
	case res == porcupine.Illegal && r.Visualization != "":
		t.Errorf("history of %d operations is NOT linearizable; visualization: %s", len(hist), r.Visualization)
	case res == porcupine.Illegal:
		t.Errorf("history of %d operations is NOT linearizable (no visualization could be written)", len(hist))
	case res != porcupine.Ok:
		t.Errorf("linearizability check of %d operations did not finish within 3m", len(hist))
	}
	if lostErr != nil {
		t.Errorf("reading the acknowledged unique keys: %v", lostErr)
	}
	if len(lost) > 0 {
		sort.Strings(lost)
		t.Errorf("%d of %d acknowledged writes lost, e.g. %s", len(lost), r.UniqueAcked, strings.Join(lost[:min(10, len(lost))], "; "))
	}
	return r
}

// history returns the recorded operations ready for porcupine: open
// operations end after everything else, and an unknown write whose value a
// read observed carries the revision it was observed with. A value observed
// with two revisions means one write was applied twice.
func (w *workload) history() ([]porcupine.Operation, error) {
	w.mu.Lock()
	hist := append([]porcupine.Operation(nil), w.ops...)
	w.mu.Unlock()
	var end int64
	seenAt := map[string]uint64{}
	var dup []string
	for _, op := range hist {
		end = max(end, op.Call, op.Return)
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		var v string
		switch {
		case in.Kind == opGet && out.Found:
			v = out.Value
		case in.Kind != opGet && !out.Unknown && !out.CompareFailed:
			v = in.Value
		default:
			continue
		}
		if r, ok := seenAt[in.Key+"\x00"+v]; ok && r != out.Rev {
			dup = append(dup, fmt.Sprintf("%s=%s at revisions %d and %d", in.Key, v, r, out.Rev))
		}
		seenAt[in.Key+"\x00"+v] = out.Rev
	}
	for i := range hist {
		if hist[i].Return < 0 {
			hist[i].Return = end + 1
			in, out := hist[i].Input.(kvInput), hist[i].Output.(kvOutput)
			out.Rev = seenAt[in.Key+"\x00"+in.Value]
			hist[i].Output = out
		}
	}
	if len(dup) > 0 {
		return hist, fmt.Errorf("values observed with two revisions (a write applied twice?): %s", strings.Join(dup, "; "))
	}
	return hist, nil
}

// visualize writes porcupine's HTML visualization of a failed check, with
// the faults as annotations, and returns its path.
func (w *workload) visualize(hist []porcupine.Operation) string {
	t := w.c.t
	res, info := porcupine.CheckOperationsVerbose(kvModel, hist, 3*time.Minute)
	if res != porcupine.Illegal {
		t.Logf("verbose re-check returned %s", res)
	}
	var notes []porcupine.Annotation
	for _, f := range w.faults {
		notes = append(notes, porcupine.Annotation{Tag: "faults", Start: int64(f.at), Description: f.what,
			BackgroundColor: "#fdd"})
	}
	info.AddAnnotations(notes)
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Logf("artifacts: %v", err)
		return ""
	}
	path := filepath.Join(artifacts, fmt.Sprintf("%s-%s.html", w.scenario, time.Now().Format("20060102-150405")))
	if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
		t.Logf("visualization: %v", err)
		return ""
	}
	return path
}

// finalReads reads every key of the keyspace once more, after the faults
// healed, into the history.
func (w *workload) finalReads() {
	proc := int(w.procs.Add(1) - 1)
	deadline := time.Now().Add(30 * time.Second)
	for _, key := range workloadKeys {
		for i := 0; time.Now().Before(deadline); i++ {
			eps := w.c.endpoints()
			if len(eps) == 0 {
				break
			}
			if _, o := w.do(proc, eps[i%len(eps)], kvInput{Kind: opGet, Key: key}); o == outOK || o == outNotFound {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// lostWrites reads every unique key linearizably (paged ranges) and returns
// the acknowledged ones that are missing or hold another value.
func (w *workload) lostWrites() ([]string, error) {
	got := map[string]string{}
	var token []byte
	deadline := time.Now().Add(60 * time.Second)
	var lastErr error
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no linearizable range within 60s: %v", lastErr)
		}
		eps := w.c.endpoints()
		if len(eps) == 0 {
			w.c.refresh()
			time.Sleep(200 * time.Millisecond)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := w.kv(eps[i%len(eps)]).Range(ctx, connect.NewRequest(&kvdv1.RangeRequest{
			Prefix: []byte(uniquePrefix), Limit: 5000, PageToken: token,
			Consistency: kvdv1.Consistency_CONSISTENCY_LINEARIZABLE,
		}))
		cancel()
		if err != nil {
			lastErr = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for _, kv := range resp.Msg.Kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		if !resp.Msg.More {
			break
		}
		token = resp.Msg.NextPageToken
	}
	w.u.mu.Lock()
	defer w.u.mu.Unlock()
	var lost []string
	for k, v := range w.u.acked {
		switch g, ok := got[k]; {
		case !ok:
			lost = append(lost, k+" missing")
		case g != v:
			lost = append(lost, fmt.Sprintf("%s = %q, want %q", k, g, v))
		}
	}
	return lost, nil
}
