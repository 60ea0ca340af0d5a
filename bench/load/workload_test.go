package load

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestWorkloadValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Workload)
		want string // substring of the error; "" = valid
	}{
		{"default", func(*Workload) {}, ""},
		{"ops instead of duration", func(w *Workload) { w.Duration, w.Ops = 0, 1000 }, ""},
		{"sequential", func(w *Workload) { w.KeyDist = Sequential }, ""},
		{"all reads", func(w *Workload) { w.ReadRatio = 1 }, ""},
		{"empty values", func(w *Workload) { w.ValueSize = 0 }, ""},
		{"smallest key", func(w *Workload) { w.Keyspace, w.KeySize = 10, 2 }, ""},
		{"no clients", func(w *Workload) { w.Clients = 0 }, "--clients (0) must be between 1 and 100000"},
		{"too many clients", func(w *Workload) { w.Clients = 1e6 }, "--clients (1000000)"},
		{"negative duration", func(w *Workload) { w.Duration = -time.Second }, "--duration (-1s) must be > 0"},
		{"negative ops", func(w *Workload) { w.Ops = -1 }, "--ops (-1) must be > 0"},
		{"both", func(w *Workload) { w.Ops = 5 }, "--duration (10s) and --ops (5) are both set: give one"},
		{"neither", func(w *Workload) { w.Duration = 0 }, "neither --duration nor --ops is set"},
		{"negative warmup", func(w *Workload) { w.Warmup = -1 }, "--warmup (-1ns) must be >= 0"},
		{"empty keyspace", func(w *Workload) { w.Keyspace = 0 }, "--keyspace (0) must be >= 1"},
		{"key too small", func(w *Workload) { w.KeySize = 5 }, `--key-size (5) is too small for --keyspace (100000): keys need at least 6 bytes ("k" and 5 digits)`},
		{"negative value", func(w *Workload) { w.ValueSize = -1 }, "--value-size (-1) must be between 0 and"},
		{"read ratio above 1", func(w *Workload) { w.ReadRatio = 1.5 }, "--read-ratio (1.5) must be between 0 and 1"},
		{"read ratio NaN", func(w *Workload) { w.ReadRatio = math.NaN() }, "--read-ratio (NaN)"},
		{"bad dist", func(w *Workload) { w.KeyDist = "zipf" }, `--key-dist "zipf" is not "uniform" or "sequential"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := DefaultWorkload()
			tc.edit(&w)
			err := w.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Validate() = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}
