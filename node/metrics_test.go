package node

import (
	"errors"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Failed reads are counted by result beside the successful ones; only the
// successful ones take a latency.
func TestMetricsCountFailedReads(t *testing.T) {
	m := newMetrics(nil, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.reads, m.read)
	m.observeRead(time.Now(), Linearizable, nil)
	m.observeRead(time.Now(), Linearizable, dragonboat.ErrTimeout)
	m.observeRead(time.Now(), Serializable, errors.New("not ready"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range s.GetLabel() {
				key += " " + l.GetValue()
			}
			got[key] = s.GetCounter().GetValue() + float64(s.GetHistogram().GetSampleCount())
		}
	}
	want := map[string]float64{
		"kvd_node_reads_total linearizable ok":        1,
		"kvd_node_reads_total linearizable timeout":   1,
		"kvd_node_reads_total serializable error":     1,
		"kvd_node_read_duration_seconds linearizable": 1,
	}
	if len(got) != len(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
