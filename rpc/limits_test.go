package rpc_test

import (
	"strings"
	"testing"

	"github.com/kvd-project/kvd/rpc"
)

func TestLimitsValidate(t *testing.T) {
	if err := rpc.DefaultLimits().Validate(); err != nil {
		t.Fatalf("default limits: %v", err)
	}
	if l := rpc.DefaultLimits(); l.MaxRangeBytes != 3<<20 || l.MaxStreamBytes != 16<<20 {
		t.Fatalf("defaults: %d range bytes, %d stream bytes; want 3 MiB and 16 MiB", l.MaxRangeBytes, l.MaxStreamBytes)
	}
	cases := []struct {
		name string
		edit func(*rpc.Limits)
		want string
	}{
		{"no range bytes", func(l *rpc.Limits) { l.MaxRangeBytes = 0 }, "max range bytes (0) must be at least 1"},
		{"negative range bytes", func(l *rpc.Limits) { l.MaxRangeBytes = -5 }, "max range bytes (-5)"},
		{"no stream bytes", func(l *rpc.Limits) { l.MaxStreamBytes = 0 }, "max stream bytes (0) must be at least 1"},
		{"no range limit", func(l *rpc.Limits) { l.MaxRangeLimit = 0 }, "max range limit (0)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := rpc.DefaultLimits()
			tc.edit(&l)
			err := l.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}
