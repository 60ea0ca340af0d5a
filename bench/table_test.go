package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvd-project/kvd/bench/load"
)

func res(mode, op string, clients int, ops, p50, p99 float64) load.Result {
	r := load.Result{Mode: mode, Op: op, Clients: clients, OpsPerSec: ops, P50Ms: p50, P99Ms: p99,
		KeySize: 16, ValueSize: 128, Keyspace: 100000, KeyDist: load.Uniform, Protocol: "connect", Transport: "http1"}
	if op == "get" {
		r.ReadRatio, r.Consistency = 1, "linearizable"
	}
	if mode == "etcd" {
		r.Protocol, r.Transport = "grpc", "h2c"
	}
	return r
}

func TestWriteTable(t *testing.T) {
	results := []load.Result{
		res("ceiling", "put", 64, 10000, 5, 20),
		res("kvd", "put", 1, 400, 2, 4),
		res("kvd", "put", 64, 7500, 8, 30),
		res("kvd", "get", 16, 9000, 1.5, 6),
		res("etcd", "put", 64, 5000, 12, 30),
		res("etcd", "put", 1, 500, 1.6, 5),
		res("etcd", "get", 16, 3000, 5, 12),
	}
	c2 := res("ceiling", "put", 64, 8000, 6, 25)
	c2.Transport = "h2c"
	results = append(results, c2)
	results[2].Errors, results[2].FirstError = 3, "boom"

	var b strings.Builder
	if err := writeTable(&b, results, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	for _, want := range []struct {
		line   int
		fields []string
	}{
		{0, []string{"clients", "op", "kvd ops/s", "% of RPC ceiling", "etcd ops/s", "kvd/etcd ops/s"}},
		{1, []string{"1", "put", "400", "2.00", "4% of 10000", "500", "1.60", "0.80×", "1.25×", "0.80×"}},
		{2, []string{"64", "put", "7500", "75% of 10000", "5000", "1.50×", "0.67×", "1.00×"}},
		{3, []string{"16", "get lin", "9000", "90% of 10000", "3000", "3.00×", "0.30×", "0.50×"}},
	} {
		for _, f := range want.fields {
			if !strings.Contains(lines[want.line], f) {
				t.Errorf("line %d lacks %q:\n%s", want.line, f, out)
			}
		}
	}
	for _, want := range []string{
		"kvd put at 64 clients: 3 errors, first: boom",
		"RPC ceiling, connect over http1, 64 clients, no-op put: 10000 ops/s",
		"RPC ceiling, connect over h2c, 64 clients, no-op put: 8000 ops/s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	b.Reset()
	if err := writeTable(&b, results[:4], true); err != nil {
		t.Fatal(err)
	}
	md := strings.Split(b.String(), "\n")
	if !strings.HasPrefix(md[0], "| clients") || !strings.HasPrefix(md[1], "|---") || strings.Contains(md[0], "etcd") {
		t.Errorf("markdown without etcd results:\n%s", b.String())
	}
}

func TestTableCommandReadsJSONLines(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "r.jsonl")
	body := `{"mode":"kvd","op":"put","clients":64,"ops_per_sec":1234,"p50_ms":1,"p99_ms":2,"protocol":"connect","transport":"http1"}` +
		"\n\n" + `{"mode":"ceiling","op":"put","clients":64,"ops_per_sec":2468,"protocol":"connect","transport":"http1"}` + "\n"
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runApp(t, "table", f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "50% of 2468") {
		t.Errorf("table:\n%s", out)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("ops: 5\n"), 0o644)
	if _, err := runApp(t, "table", bad); err == nil || !strings.Contains(err.Error(), "bad:1: not a bench JSON result") {
		t.Errorf("bad input: %v", err)
	}
	if _, err := runApp(t, "table"); err == nil {
		t.Error("no files accepted")
	}
}

func TestWriteTableShowsTheMedianRun(t *testing.T) {
	var results []load.Result
	for _, ops := range []float64{100, 300, 200} {
		results = append(results, res("kvd", "put", 64, ops, ops/100, ops/10), res("etcd", "put", 64, ops/2, 1, 1))
	}
	results = append(results, res("ceiling", "put", 64, 1000, 1, 1), res("ceiling", "put", 64, 400, 1, 1))
	var b strings.Builder
	if err := writeTable(&b, results, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	for _, f := range []string{"200", "2.00", "20.0", "50% of 400", "100", "2.00×"} {
		if !strings.Contains(lines[1], f) {
			t.Errorf("median row lacks %q:\n%s", f, out)
		}
	}
	if strings.Count(out, "RPC ceiling, connect over http1") != 1 || !strings.Contains(out, "kvd: the median run (by ops/s) of each workload, of up to 3; etcd and the ceilings: their own medians") {
		t.Errorf("notes:\n%s", out)
	}
}

func TestWriteTablePairsRunsOfTheSameRound(t *testing.T) {
	var results []load.Result
	for i, ops := range []float64{100, 300, 200} {
		label := fmt.Sprintf("round=%d", i+1)
		k, e, c := res("kvd", "put", 64, ops, 1, 1), res("etcd", "put", 64, 1000-ops, 1, 1), res("ceiling", "put", 64, 10*ops, 1, 1)
		k.Label, e.Label, c.Label = label, label, label
		results = append(results, c, k, e)
	}
	var b strings.Builder
	if err := writeTable(&b, results, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	// kvd's median is round 3 (200): etcd's round 3 is 800, the ceiling 2000.
	row := strings.Split(out, "\n")[1]
	for _, f := range []string{"200", "10% of 2000", "800", "0.25×"} {
		if !strings.Contains(row, f) {
			t.Errorf("row lacks %q:\n%s", f, out)
		}
	}
	if !strings.Contains(out, "the etcd figures and the ceiling are those of the same round") ||
		!strings.Contains(out, "(median of 3 runs)") {
		t.Errorf("notes:\n%s", out)
	}
}

// Stream rows say so, pair with etcd's unary run of the same workload and
// are set against the best unary ceiling; the no-op stream's own ceiling
// is listed under the table.
func TestWriteTableStreamRows(t *testing.T) {
	stream := res("kvd", "put", 64, 15000, 4, 9)
	stream.Transport = transportStream + leaderSuffix
	sc := res("ceiling", "put", 64, 150000, 0.3, 1)
	sc.Transport = transportStream
	results := []load.Result{res("ceiling", "put", 64, 20000, 2, 7), sc, stream, res("etcd", "put", 64, 7500, 8, 20)}
	var b strings.Builder
	if err := writeTable(&b, results, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	row := strings.Split(out, "\n")[1]
	for _, f := range []string{"put (stream, to leader)", "15000", "75% of 20000", "7500", "2.00×"} {
		if !strings.Contains(row, f) {
			t.Errorf("stream row lacks %q:\n%s", f, out)
		}
	}
	if !strings.Contains(out, "connect over stream, 64 clients, no-op put: 150000 ops/s") {
		t.Errorf("the stream ceiling is not listed:\n%s", out)
	}
}

// A TLS row says so, is set against the plaintext ceiling, shows no etcd
// figures (etcd runs in plaintext), and the notes give its ratio to the same
// run without TLS of the same round.
func TestWriteTableTLSRows(t *testing.T) {
	plain1, plain2 := res("kvd", "put", 64, 7000, 8, 30), res("kvd", "put", 64, 9000, 7, 28)
	secure1, secure2 := res("kvd", "put", 64, 5600, 10, 40), res("kvd", "put", 64, 6000, 9, 35)
	for _, r := range []*load.Result{&secure1, &secure2} {
		r.Transport = transportHTTP1 + tlsSuffix
	}
	plain1.Label, secure1.Label, plain2.Label, secure2.Label = "round=1", "round=1", "round=2", "round=2"
	results := []load.Result{res("ceiling", "put", 64, 10000, 5, 20), plain1, secure1, plain2, secure2,
		res("etcd", "put", 64, 5000, 12, 30)}
	var b strings.Builder
	if err := writeTable(&b, results, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	for _, f := range []string{"64", "put (TLS)", "5600", "56% of 10000"} {
		if !strings.Contains(lines[2], f) {
			t.Errorf("TLS row lacks %q:\n%s", f, out)
		}
	}
	if strings.Contains(lines[2], "5000") {
		t.Errorf("the TLS row shows etcd's plaintext figures:\n%s", out)
	}
	// Medians: 7000 plain (round 1) and 5600 TLS (round 1), 0.80×.
	if !strings.Contains(out, "TLS: put at 64 clients, with TLS / without: 0.80× ops/s (5600 / 7000), 1.25× p50, 1.33× p99") {
		t.Errorf("no TLS ratio note:\n%s", out)
	}
}

func TestWriteWatchTable(t *testing.T) {
	watched := func(r load.Result, n int, on string, events, p50, p99 float64) load.Result {
		r.Watchers, r.WatchOn, r.WatchEventsPerSec, r.WatchP50Ms, r.WatchP99Ms, r.WatchSentP50Ms = n, on, events, p50, p99, p50+5
		return r
	}
	results := []load.Result{
		res("kvd", "put", 64, 8000, 8, 20),
		watched(res("kvd", "put", 64, 6000, 10, 25), 16, "all", 96000, 1.5, 9),
		watched(res("kvd", "put", 64, 7000, 9, 22), 16, "observers", 112000, -0.5, 8),
		res("etcd", "put", 64, 7500, 8, 20),
		watched(res("etcd", "put", 64, 5000, 12, 30), 16, "all", 80000, 2, 12),
	}
	var b strings.Builder
	if err := writeTable(&b, results, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	fields := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{
		"64 put, 16 watchers on observers 7000",
		"64 16 on all 6000 0.75× 96000 1.50 9.00 6.50 5000 0.67× 80000 2.00 12.0 7.00",
		"64 16 on observers 7000 0.88× 112000 -0.500 8.00 4.50 5000 0.67× 80000 2.00 12.0 7.00",
	} {
		if !strings.Contains(fields, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// grpc-go runs are rows of their own beside the Go client's, each with
// etcd's figures for the same workload; serializable gets pair with etcd's
// serializable gets.
func TestWriteTableGRPCGoRows(t *testing.T) {
	grpcGo := func(op string, clients int, ops float64, consistency string) load.Result {
		r := res("kvd", op, clients, ops, 1, 2)
		r.Protocol, r.Transport = protocolGRPCGo, transportH2C
		if consistency != "" {
			r.Consistency = consistency
		}
		return r
	}
	etcdSer := res("etcd", "get", 16, 8000, 1, 2)
	etcdSer.Consistency = "serializable"
	results := []load.Result{
		res("kvd", "put", 64, 9000, 5, 9),
		grpcGo("put", 64, 6000, ""),
		grpcGo("get", 16, 12000, "linearizable"),
		grpcGo("get", 16, 16000, "serializable"),
		res("etcd", "put", 64, 5000, 8, 20),
		res("etcd", "get", 16, 10000, 1, 2),
		etcdSer,
	}
	var b strings.Builder
	if err := writeTable(&b, results, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	for i, want := range [][]string{
		{"put", "9000", "5000", "1.80×"},
		{"put (grpc-go)", "6000", "5000", "1.20×"},
		{"get lin (grpc-go)", "12000", "10000", "1.20×"},
		{"get ser (grpc-go)", "16000", "8000", "2.00×"},
	} {
		for _, f := range want {
			if !strings.Contains(lines[i+1], f) {
				t.Errorf("row %d lacks %q:\n%s", i+1, f, b.String())
			}
		}
	}
}
