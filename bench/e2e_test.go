package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvd-project/kvd/bench/load"
	"github.com/kvd-project/kvd/kvtest"
)

func decodeResults(t *testing.T, out string) []load.Result {
	t.Helper()
	var rs []load.Result
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r load.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not one JSON object per line: %v\n%s", err, out)
		}
		rs = append(rs, r)
	}
	return rs
}

// TestAgainstCluster runs the generator for about a second against a real
// in-process kvd node, writes then mixed reads, and checks the JSON.
func TestAgainstCluster(t *testing.T) {
	c := kvtest.NewCluster(t, 1)
	plot := filepath.Join(t.TempDir(), "plot.html")
	out, err := runApp(t, "--endpoints", c.Endpoint(0), "--clients", "4", "--duration", "1s",
		"--warmup", "200ms", "--json", "--plot", plot)
	if err != nil {
		t.Fatal(err)
	}
	rs := decodeResults(t, out)
	if len(rs) != 1 {
		t.Fatalf("%d JSON objects, want 1:\n%s", len(rs), out)
	}
	r := rs[0]
	if r.Ops <= 0 || r.Errors != 0 || r.OpsPerSec <= 0 || r.P50Ms <= 0 || r.MaxMs < r.P99Ms {
		t.Fatalf("result %+v: want ops > 0, errors == 0 and sane percentiles (first error: %s)", r, r.FirstError)
	}
	if r.Mode != "kvd" || r.Op != "put" || r.Protocol != "connect" || r.Transport != "stream" || r.Target != c.Endpoint(0) {
		t.Errorf("result labels %+v", r)
	}
	page, err := os.ReadFile(plot)
	if err != nil || !strings.Contains(string(page), "<polyline") {
		t.Errorf("plot: %v, %d bytes", err, len(page))
	}

	// Gets and puts, serializable, unary over gRPC: the keys written above
	// are found (the keyspace is small).
	out, err = runApp(t, "--endpoints", c.Endpoint(0), "--clients", "4", "--ops", "300", "--warmup", "0s",
		"--keyspace", "50", "--preload", "--read-ratio", "0.5", "--consistency", "serializable",
		"--protocol", "grpc", "--unary", "--spread", "--json")
	if err != nil {
		t.Fatal(err)
	}
	r = decodeResults(t, out)[0]
	if r.Ops != 300 || r.Errors != 0 || r.NotFound != 0 || r.Op != "mixed" || r.Consistency != "serializable" || r.Transport != "h2c" {
		t.Fatalf("mixed run: %+v (first error: %s)", r, r.FirstError)
	}

	// The same over the stream (the default), linearizable, to the leader.
	out, err = runApp(t, "--endpoints", c.Endpoint(0), "--clients", "8", "--ops", "400", "--warmup", "0s",
		"--keyspace", "50", "--read-ratio", "0.5", "--prefer-leader", "--json")
	if err != nil {
		t.Fatal(err)
	}
	r = decodeResults(t, out)[0]
	if r.Ops != 400 || r.Errors != 0 || r.NotFound != 0 || r.Transport != "stream+leader" {
		t.Fatalf("stream run: %+v (first error: %s)", r, r.FirstError)
	}
}

func TestCeiling(t *testing.T) {
	out, err := runApp(t, "ceiling", "--clients", "4", "--duration", "300ms", "--warmup", "0s", "--json")
	if err != nil {
		t.Fatal(err)
	}
	rs := decodeResults(t, out)
	if len(rs) != 2 {
		t.Fatalf("%d results, want one per default transport:\n%s", len(rs), out)
	}
	for i, tr := range []string{"http1", "h2c"} {
		r := rs[i]
		if r.Mode != "ceiling" || r.Transport != tr || r.Ops <= 0 || r.Errors != 0 {
			t.Errorf("ceiling over %s: %+v (first error: %s)", tr, r, r.FirstError)
		}
	}
	// Gets against the no-op server are found and carry a value.
	out, err = runApp(t, "ceiling", "--clients", "2", "--ops", "50", "--warmup", "0s", "--read-ratio", "1",
		"--transport", "h2c", "--protocol", "grpc", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeResults(t, out)[0]; r.Ops != 50 || r.NotFound != 0 || r.Op != "get" {
		t.Errorf("ceiling gets: %+v", r)
	}
	out, err = runApp(t, "ceiling", "--clients", "8", "--ops", "200", "--warmup", "0s", "--read-ratio", "0.5",
		"--transport", "stream", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeResults(t, out)[0]; r.Ops != 200 || r.Errors != 0 || r.NotFound != 0 || r.Transport != "stream" {
		t.Errorf("ceiling over the stream: %+v (first error: %s)", r, r.FirstError)
	}
}
