package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/bench/load"
)

// The table command turns the JSON results of a session (bench --json,
// bench ceiling --json, etcd-bench --json) into one comparison table: kvd
// rows with their fraction of the RPC ceiling, and etcd's figures for the
// same workload side by side with the ratios. bench/run-cluster.sh prints it.

func tableCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "table",
		Usage:     "compare JSON results (kvd, ceiling, etcd) in one table",
		ArgsUsage: "FILE... (JSON objects, one per line; - for stdin)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "markdown", Usage: "print a Markdown table"},
		},
		Action: func(c *cli.Context) error {
			if !c.Args().Present() {
				return fmt.Errorf("give the files with the JSON results (- for stdin)")
			}
			var results []load.Result
			for _, name := range c.Args().Slice() {
				rs, err := readResults(name)
				if err != nil {
					return err
				}
				results = append(results, rs...)
			}
			return writeTable(stdout, results, c.Bool("markdown"))
		},
	}
}

func readResults(name string) ([]load.Result, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var out []load.Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var res load.Result
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			return nil, fmt.Errorf("%s:%d: not a bench JSON result: %w", name, n, err)
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// workloadKey identifies a workload across systems.
func workloadKey(r *load.Result) string {
	return fmt.Sprintf("%s/%d/%s/%s/%v/%d/%d/%d", r.Op, r.Clients, r.KeyDist, r.Consistency, r.ReadRatio, r.KeySize, r.ValueSize, r.Keyspace) +
		watchKey(r)
}

// watchKey tells runs with watchers apart; "" without.
func watchKey(r *load.Result) string {
	if r.Watchers == 0 {
		return ""
	}
	return fmt.Sprintf("/watch%d@%s", r.Watchers, r.WatchOn)
}

func opLabel(r *load.Result) string {
	s := r.Op
	if r.Op == "mixed" {
		s = fmt.Sprintf("mixed %.0f%% get", r.ReadRatio*100)
	}
	if r.KeyDist == load.Sequential {
		s += " seq"
	}
	if r.ReadRatio > 0 && r.Consistency != "" {
		s += " " + map[string]string{"linearizable": "lin", "serializable": "ser"}[r.Consistency]
	}
	transport, leader := strings.CutSuffix(r.Transport, leaderSuffix)
	transport, overTLS := strings.CutSuffix(transport, tlsSuffix)
	var notes []string
	if r.Protocol == protocolGRPCGo {
		notes = append(notes, protocolGRPCGo)
	}
	if overTLS {
		notes = append(notes, "TLS")
	}
	if transport == transportStream {
		notes = append(notes, "stream")
	}
	if leader {
		notes = append(notes, "to leader")
	}
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, ", ") + ")"
	}
	if r.Watchers > 0 {
		s += fmt.Sprintf(", %d watchers", r.Watchers)
		if r.WatchOn == "observers" {
			s += " on observers"
		}
	}
	return s
}

// isTLS reports whether r ran over TLS.
func isTLS(r *load.Result) bool {
	transport, _ := strings.CutSuffix(r.Transport, leaderSuffix)
	return strings.HasSuffix(transport, tlsSuffix)
}

// plainKey is runKey of the same run without TLS.
func plainKey(r *load.Result) string {
	transport, leader := strings.CutSuffix(r.Transport, leaderSuffix)
	transport = strings.TrimSuffix(transport, tlsSuffix)
	if leader {
		transport += leaderSuffix
	}
	return r.Mode + "/" + r.Protocol + "/" + transport + "/" + workloadKey(r)
}

// ceilingFor picks the ceiling run of r's protocol and transport, the one
// with r's client count if there is one.
//
// Stream runs are set against the best unary ceiling of their protocol:
// the stream's point is to pass that wall (the no-op stream's own ceiling
// is listed below the table).
func ceilingFor(r *load.Result, ceilings []*load.Result) *load.Result {
	var best *load.Result
	transport, _ := strings.CutSuffix(r.Transport, leaderSuffix)
	// Runs over TLS are set against the plaintext ceiling: what TLS costs
	// is part of what the row shows.
	transport = strings.TrimSuffix(transport, tlsSuffix)
	if transport == transportStream {
		for _, c := range ceilings {
			if c.Protocol == r.Protocol && c.Transport != transportStream && (best == nil || c.OpsPerSec > best.OpsPerSec) {
				best = c
			}
		}
		return best
	}
	for _, c := range ceilings {
		if c.Protocol != r.Protocol || c.Transport != transport {
			continue
		}
		if best == nil || (c.Clients == r.Clients && best.Clients != r.Clients) {
			best = c
		}
	}
	return best
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// median groups results by mode and workload (in the order each first
// appears) and keeps, of each group, the run with the median throughput
// (the lower middle one of an even count), with how many runs it had.
func median(results []load.Result) (runs []*load.Result, count map[*load.Result]int) {
	groups := map[string][]*load.Result{}
	var order []string
	for i := range results {
		r := &results[i]
		k := runKey(r)
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	count = map[*load.Result]int{}
	for _, k := range order {
		g := groups[k]
		slices.SortStableFunc(g, func(a, b *load.Result) int { return cmp.Compare(a.OpsPerSec, b.OpsPerSec) })
		m := g[(len(g)-1)/2]
		runs = append(runs, m)
		count[m] = len(g)
	}
	return runs, count
}

func runKey(r *load.Result) string {
	return r.Mode + "/" + r.Protocol + "/" + r.Transport + "/" + workloadKey(r)
}

// writeTable prints one row per kvd workload (in the order they ran), with
// etcd's figures for the same workload when there are any, then the
// ceilings and any errors. A workload run several times is shown by its
// median kvd run, and compared with the etcd run and the ceiling of that
// run's label (its round) when there are labels, else with their medians.
func writeTable(w io.Writer, results []load.Result, markdown bool) error {
	runs, count := median(results)
	t := newTable(results, runs)
	header := []string{"clients", "op", "kvd ops/s", "p50 ms", "p99 ms", "% of RPC ceiling"}
	if len(t.etcd) > 0 {
		header = append(header, "etcd ops/s", "p50 ms", "p99 ms", "kvd/etcd ops/s", "kvd/etcd p50", "kvd/etcd p99")
	}
	rows := [][]string{header}
	for _, r := range t.kvd {
		rows = append(rows, t.row(r))
	}
	t.ceilingNotes(count)
	t.medianNote(count)
	var b strings.Builder
	printRows(&b, rows, markdown)
	for _, n := range t.notes {
		if markdown {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s\n", n)
	}
	writeWatchTable(&b, runs, markdown)
	_, err := io.WriteString(w, b.String())
	return err
}

// table is the side-by-side table being written: the median runs by mode,
// the labelled runs for pairing figures of one round, and the notes.
type table struct {
	kvd, ceilings []*load.Result
	etcd          map[string]*load.Result // by workloadKey
	byLabel       map[string]*load.Result // by runKey + "@" + label
	plain         map[string]*load.Result // kvd medians by runKey, for the TLS ratios
	paired        bool                    // some figure came from the same round
	notes         []string
}

func newTable(results []load.Result, runs []*load.Result) *table {
	t := &table{etcd: map[string]*load.Result{}, byLabel: map[string]*load.Result{}, plain: map[string]*load.Result{}}
	for _, r := range runs {
		switch r.Mode {
		case "kvd":
			t.kvd = append(t.kvd, r)
			t.plain[runKey(r)] = r
		case "ceiling":
			t.ceilings = append(t.ceilings, r)
		case "etcd":
			t.etcd[workloadKey(r)] = r
		}
	}
	for i := range results {
		if r := &results[i]; r.Label != "" {
			t.byLabel[runKey(r)+"@"+r.Label] = r
		}
	}
	return t
}

// pair returns the run like median (mode, protocol, transport, workload)
// of the round label, or median itself.
func (t *table) pair(median *load.Result, label string) *load.Result {
	if median == nil || label == "" {
		return median
	}
	if r := t.byLabel[runKey(median)+"@"+label]; r != nil {
		t.paired = true
		return r
	}
	return median
}

// row is kvd run r's row, with etcd's figures beside it; it adds notes.
func (t *table) row(r *load.Result) []string {
	row := []string{fmt.Sprint(r.Clients), opLabel(r), fmt.Sprintf("%.0f", r.OpsPerSec), load.FormatMs(r.P50Ms), load.FormatMs(r.P99Ms), "–"}
	if c := t.pair(ceilingFor(r, t.ceilings), r.Label); c != nil && c.OpsPerSec > 0 {
		row[5] = fmt.Sprintf("%.0f%% of %.0f", 100*r.OpsPerSec/c.OpsPerSec, c.OpsPerSec)
	}
	if isTLS(r) {
		// etcd runs in plaintext: the comparison that counts is with
		// the same kvd run without TLS, in the notes.
		if p := t.pair(t.plain[plainKey(r)], r.Label); p != nil && p.OpsPerSec > 0 {
			t.notes = append(t.notes, fmt.Sprintf("TLS: %s at %d clients, with TLS / without: %s ops/s (%.0f / %.0f), %s p50, %s p99",
				opLabel(p), r.Clients, ratio(r.OpsPerSec, p.OpsPerSec), r.OpsPerSec, p.OpsPerSec,
				ratio(r.P50Ms, p.P50Ms), ratio(r.P99Ms, p.P99Ms)))
		}
	}
	if len(t.etcd) > 0 {
		if e := t.pair(t.etcd[workloadKey(r)], r.Label); e != nil && !isTLS(r) {
			row = append(row, fmt.Sprintf("%.0f", e.OpsPerSec), load.FormatMs(e.P50Ms), load.FormatMs(e.P99Ms),
				ratio(r.OpsPerSec, e.OpsPerSec), ratio(r.P50Ms, e.P50Ms), ratio(r.P99Ms, e.P99Ms))
			if e.Errors > 0 {
				t.notes = append(t.notes, fmt.Sprintf("etcd %s at %d clients: %d errors, first: %s", opLabel(e), e.Clients, e.Errors, e.FirstError))
			}
		} else {
			row = append(row, "–", "–", "–", "–", "–", "–")
		}
	}
	if r.Errors > 0 {
		t.notes = append(t.notes, fmt.Sprintf("kvd %s at %d clients: %d errors, first: %s", opLabel(r), r.Clients, r.Errors, r.FirstError))
	}
	return row
}

func (t *table) ceilingNotes(count map[*load.Result]int) {
	for _, c := range t.ceilings {
		note := fmt.Sprintf("RPC ceiling, %s over %s, %d clients, no-op %s: %.0f ops/s, p50 %s ms, p99 %s ms",
			c.Protocol, c.Transport, c.Clients, c.Op, c.OpsPerSec, load.FormatMs(c.P50Ms), load.FormatMs(c.P99Ms))
		if count[c] > 1 {
			note += fmt.Sprintf(" (median of %d runs)", count[c])
		}
		t.notes = append(t.notes, note)
	}
}

func (t *table) medianNote(count map[*load.Result]int) {
	n := slices.Max(append(slices.Collect(maps.Values(count)), 0))
	if n <= 1 {
		return
	}
	note := fmt.Sprintf("kvd: the median run (by ops/s) of each workload, of up to %d", n)
	if t.paired {
		note += "; the etcd figures and the ceiling are those of the same round"
	} else {
		note += "; etcd and the ceilings: their own medians"
	}
	t.notes = append(t.notes, note)
}

func printRows(b *strings.Builder, rows [][]string, markdown bool) {
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			width[i] = max(width[i], len([]rune(cell)))
		}
	}
	for n, row := range rows {
		var line strings.Builder
		for i, cell := range row {
			pad := strings.Repeat(" ", width[i]-len([]rune(cell)))
			switch {
			case markdown:
				fmt.Fprintf(&line, "| %s%s ", cell, pad)
			case i > 1: // numbers: right-aligned
				fmt.Fprintf(&line, "%s%s  ", pad, cell)
			default:
				fmt.Fprintf(&line, "%s%s  ", cell, pad)
			}
		}
		if markdown {
			line.WriteString("|")
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteString("\n")
		if markdown && n == 0 {
			for i := range row {
				fmt.Fprintf(b, "|%s", strings.Repeat("-", width[i]+2))
			}
			b.WriteString("|\n")
		}
	}
}
