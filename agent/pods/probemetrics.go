package pods

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
)

// ProbeMetrics counts and times probes with kubelet's names and labels
// (prober_probe_total, prober_probe_duration_seconds); the agent serves
// Registry at /metrics/probes. A container's series go when its probe
// stops, as kubelet's do.
type ProbeMetrics struct {
	Registry *prometheus.Registry
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Probe results as kubelet labels them.
const (
	probeResultSuccessful = "successful"
	probeResultFailed     = "failed"
)

// NewProbeMetrics returns the probe metrics in a registry of their own.
func NewProbeMetrics() *ProbeMetrics {
	m := &ProbeMetrics{
		Registry: prometheus.NewRegistry(),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prober_probe_total",
			Help: "[BETA] Cumulative number of a liveness, readiness or startup probe for a container by result.",
		}, []string{"probe_type", "result", "container", "pod", "namespace", "pod_uid"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "prober_probe_duration_seconds",
			Help:    "[ALPHA] Duration in seconds for a probe response.",
			Buckets: prometheus.DefBuckets,
		}, []string{"probe_type", "container", "pod", "namespace"}),
	}
	m.Registry.MustRegister(m.total, m.duration)
	return m
}

// observe records one probe of container c of pod.
func (m *ProbeMetrics) observe(pod *v1.Pod, c string, kind probeKind, ok bool, d time.Duration) {
	if m == nil {
		return
	}
	result := probeResultFailed
	if ok {
		result = probeResultSuccessful
	}
	m.total.WithLabelValues(kind.String(), result, c, pod.Name, pod.Namespace, string(pod.UID)).Inc()
	m.duration.WithLabelValues(kind.String(), c, pod.Name, pod.Namespace).Observe(d.Seconds())
}

// forget drops the series of a probe that stopped.
func (m *ProbeMetrics) forget(pod *v1.Pod, c string, kind probeKind) {
	if m == nil {
		return
	}
	m.total.DeletePartialMatch(prometheus.Labels{"probe_type": kind.String(), "container": c, "pod": pod.Name, "namespace": pod.Namespace, "pod_uid": string(pod.UID)})
	m.duration.DeleteLabelValues(kind.String(), c, pod.Name, pod.Namespace)
}
