// Package storemetrics exposes the store's Prometheus metrics on the
// server's kube-apiserver /metrics: raft's own timings (commit, FSM apply,
// snapshot), which hashicorp/raft reports through go-metrics and a Sink
// turns into histograms, and, read at each scrape by a Collector, the
// applied and commit index, term and role, leader changes, the FSM's keys
// and bytes, open watches, what watch streams hold queued against their
// caps, the event history's size against its cap, and gossip members by
// role and status.
package storemetrics

import (
	"strings"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	"github.com/prometheus/client_golang/prometheus"
)

// timings maps the go-metrics keys of hashicorp/raft's timers to the
// histograms they feed.
var timings = []struct {
	key  string
	name string
	help string
}{
	{"raft.commitTime", "keelson_raft_commit_duration_seconds", "Time from the leader appending an entry to its commit (leader only)."},
	{"raft.fsm.apply", "keelson_raft_apply_duration_seconds", "Time the state machine took to apply one committed entry."},
	{"raft.snapshot.takeSnapshot", "keelson_raft_snapshot_duration_seconds", "Time taken to snapshot the state machine and persist it."},
}

// Sink is a go-metrics sink that feeds raft's timers into Prometheus
// histograms and drops every other metric.
type Sink struct {
	byKey map[string]prometheus.Histogram
}

// NewSink returns a Sink; register it (it is a Collector) and Install it.
func NewSink() *Sink {
	s := &Sink{byKey: map[string]prometheus.Histogram{}}
	for _, t := range timings {
		s.byKey[t.key] = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: t.name, Help: t.help,
			// 0.5 ms to ~16 s: commit and apply are milliseconds,
			// snapshots of a large store seconds.
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		})
	}
	return s
}

var installOnce sync.Once

// Install makes s the process's go-metrics sink. go-metrics has one
// global sink (hashicorp/raft, serf and memberlist all report to it), so
// only the first Install in a process takes effect.
func Install(s *Sink) {
	installOnce.Do(func() {
		cfg := gometrics.DefaultConfig("")
		cfg.EnableHostname = false
		cfg.EnableHostnameLabel = false
		cfg.EnableRuntimeMetrics = false
		cfg.TimerGranularity = time.Millisecond
		_, _ = gometrics.NewGlobal(cfg, s) // fails only on a nil config
	})
}

// Describe and Collect make the Sink a Collector of its histograms.
func (s *Sink) Describe(ch chan<- *prometheus.Desc) {
	for _, h := range s.byKey {
		h.Describe(ch)
	}
}

func (s *Sink) Collect(ch chan<- prometheus.Metric) {
	for _, h := range s.byKey {
		h.Collect(ch)
	}
}

// observe records a timer sample, which go-metrics gives in milliseconds.
func (s *Sink) observe(key []string, ms float32) {
	if h, ok := s.byKey[strings.Join(key, ".")]; ok {
		h.Observe(float64(ms) / 1000)
	}
}

func (s *Sink) AddSample(key []string, val float32) { s.observe(key, val) }
func (s *Sink) AddSampleWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.observe(key, val)
}
func (s *Sink) SetGauge([]string, float32)                                 {}
func (s *Sink) SetGaugeWithLabels([]string, float32, []gometrics.Label)    {}
func (s *Sink) EmitKey([]string, float32)                                  {}
func (s *Sink) IncrCounter([]string, float32)                              {}
func (s *Sink) IncrCounterWithLabels([]string, float32, []gometrics.Label) {}
