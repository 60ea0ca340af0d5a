package load

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func sampleResult() *Result {
	return &Result{
		Mode: "kvd", Op: "put", Protocol: "connect", Transport: "http1", Clients: 64,
		KeySize: 16, ValueSize: 128, Keyspace: 100000, KeyDist: Uniform,
		WarmupS: 1, DurationS: 10, Ops: 12345, Errors: 2, OpsPerSec: 1234.5,
		P50Ms: 1.5, P90Ms: 2.5, P99Ms: 9.25, P999Ms: 20, MaxMs: 31, MeanMs: 1.7,
		Percentiles: "exact", FirstError: "boom",
		Series: []Second{{T: 0, OpsPerSec: 1200, P50Ms: 1.5, P99Ms: 9, MaxMs: 30}},
	}
}

func TestWriteJSONShape(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, sampleResult()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.HasSuffix(buf.String(), "}\n") {
		t.Fatalf("want one JSON object on one line, got %q", buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	// The fields scripts rely on, with their JSON types.
	numbers := map[string]float64{
		"ops_per_sec": 1234.5, "errors": 2, "p50_ms": 1.5, "p90_ms": 2.5, "p99_ms": 9.25,
		"p999_ms": 20, "max_ms": 31, "ops": 12345, "duration_s": 10, "clients": 64, "read_ratio": 0,
	}
	for k, want := range numbers {
		got, ok := m[k].(float64)
		if !ok || got != want {
			t.Errorf("%s = %#v, want the number %v", k, m[k], want)
		}
	}
	strs := map[string]string{"mode": "kvd", "op": "put", "percentiles": "exact", "key_dist": "uniform", "first_error": "boom"}
	for k, want := range strs {
		if m[k] != want {
			t.Errorf("%s = %#v, want %q", k, m[k], want)
		}
	}
	if _, ok := m["series"]; ok {
		t.Error("series belongs in the plot, not the JSON")
	}
}

func TestWriteSummary(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSummary(&buf, sampleResult()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"kvd (connect over http1) put: 64 clients, 16-byte keys, 128-byte values, 100000 keys uniform",
		"throughput 1234 ops/s  (12345 ops, 2 errors)",
		"p50 1.50  p90 2.50  p99 9.25  p99.9 20.0  max 31.0",
		"exact: every call kept",
		"first error: boom",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestWritePlot(t *testing.T) {
	a, b := sampleResult(), sampleResult()
	b.Mode, b.Transport = "ceiling", "<h2c>"
	var buf bytes.Buffer
	if err := WritePlot(&buf, "kvd & co", []*Result{a, b}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if got := strings.Count(out, "<svg"); got != 2 {
		t.Errorf("%d charts, want 2", got)
	}
	if got := strings.Count(out, "<polyline"); got != 6 { // 2 throughput + 2×(p50, p99)
		t.Errorf("%d lines, want 6", got)
	}
	if strings.Contains(out, "<h2c>") || !strings.Contains(out, "&lt;h2c&gt;") || !strings.Contains(out, "kvd &amp; co") {
		t.Error("labels are not HTML-escaped")
	}
	if strings.Contains(out, "http://") && !strings.Contains(out, `xmlns="http://www.w3.org/2000/svg"`) || strings.Contains(out, "<script") {
		t.Error("the page must be self-contained")
	}
}

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{
		{0, 1}, {0.03, 0.05}, {1, 1}, {1.2, 2}, {3, 5}, {7, 10}, {2400, 5000},
	} {
		if got := niceStep(tc.in); got != tc.want {
			t.Errorf("niceStep(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestProcStatusKB(t *testing.T) {
	status := "Name:\tkvd\nVmHWM:\t   40960 kB\nVmRSS:\t   38000 kB\n"
	if got := procStatusKB(status, "VmRSS"); got != 38000 {
		t.Errorf("VmRSS = %d, want 38000", got)
	}
	if got := procStatusKB(status, "VmHWM"); got != 40960 {
		t.Errorf("VmHWM = %d, want 40960", got)
	}
	if got := procStatusKB(status, "VmSwap"); got != 0 {
		t.Errorf("absent field = %d, want 0", got)
	}
}
