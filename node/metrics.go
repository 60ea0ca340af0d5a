package node

import (
	"errors"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are registered per node on the Registry of its Config (no globals).
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector
	proposals  *prometheus.CounterVec
	propose    prometheus.Histogram
	batch      prometheus.Histogram
	read       *prometheus.HistogramVec
	reads      *prometheus.CounterVec
}

// LatencyBuckets are the buckets, in seconds, of every latency histogram
// of kvd (node and RPC metrics), so that their quantiles line up: 0.5 ms
// doubling to 512 ms, then 1, 2 and 5 s. A new slice on every call.
func LatencyBuckets() []float64 {
	return []float64{.0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1, 2, 5}
}

func newMetrics(n *Node, reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		proposals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvd_node_proposals_total", Help: "Raft proposals by result (ok or the error).",
		}, []string{"result"}),
		propose: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kvd_node_propose_duration_seconds", Help: "Time from proposal to applied result.", Buckets: LatencyBuckets(),
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kvd_node_write_batch_commands", Help: "Writes coalesced into one Raft entry by the batcher.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}),
		read: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kvd_node_read_duration_seconds", Help: "Latency of successful reads by consistency.", Buckets: LatencyBuckets(),
		}, []string{"consistency"}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvd_node_reads_total", Help: "Reads by consistency and result (ok, timeout or error).",
		}, []string{"consistency", "result"}),
	}
	m.collectors = []prometheus.Collector{
		m.proposals, m.propose, m.batch, m.read, m.reads,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kvd_node_role", Help: "1 voter, 2 observer, 0 unknown.",
		}, func() float64 { return float64(n.Status().Role) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kvd_node_leader_id", Help: "Replica ID of the leader as known locally (0 = none).",
		}, func() float64 { return float64(n.Status().LeaderID) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kvd_node_applied_index", Help: "Last Raft index applied by the state machine.",
		}, func() float64 { return float64(n.appliedIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kvd_node_ready", Help: "1 while the node is ready: caught up, with a leader and a quorum.",
		}, func() float64 {
			if n.Ready() {
				return 1
			}
			return 0
		}),
	}
	if reg != nil {
		for _, c := range m.collectors {
			reg.MustRegister(c)
		}
	}
	return m
}

func (m *metrics) unregister() {
	if m == nil || m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

func (m *metrics) observePropose(start time.Time, err error) {
	m.propose.Observe(time.Since(start).Seconds())
	m.proposals.WithLabelValues(resultLabel(err)).Inc()
}

// observeRead counts a read by its result; the latency histogram takes
// successful reads only (a failed one mostly measures its timeout).
func (m *metrics) observeRead(start time.Time, mode ReadMode, err error) {
	label := "linearizable"
	if mode == Serializable {
		label = "serializable"
	}
	m.reads.WithLabelValues(label, resultLabel(err)).Inc()
	if err == nil {
		m.read.WithLabelValues(label).Observe(time.Since(start).Seconds())
	}
}

func resultLabel(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, dragonboat.ErrTimeout):
		return "timeout"
	default:
		return "error"
	}
}
