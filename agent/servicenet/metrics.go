package servicenet

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/agent/proxy"
)

// proxyMetrics are the service proxy's figures under kube-proxy's names
// (pkg/proxy/metrics), so dashboards and alerts written for kube-proxy
// read them: how long syncs take, full and partial apart, when the last
// one succeeded, and how many failed.
type proxyMetrics struct {
	syncDuration, fullDuration, partialDuration prometheus.Histogram
	lastSync                                    prometheus.Gauge
	failures                                    prometheus.Counter
	servicePorts                                *prometheus.GaugeVec
}

func newProxyMetrics(reg prometheus.Registerer) *proxyMetrics {
	buckets := prometheus.ExponentialBuckets(0.001, 2, 15) // kube-proxy's
	hist := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: "kubeproxy", Name: name, Help: help, Buckets: buckets})
	}
	m := &proxyMetrics{
		syncDuration:    hist("sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds"),
		fullDuration:    hist("sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs"),
		partialDuration: hist("sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for partial resyncs"),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{Subsystem: "kubeproxy", Name: "sync_proxy_rules_last_timestamp_seconds",
			Help: "The last time proxy rules were successfully synced"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Subsystem: "kubeproxy", Name: "sync_proxy_rules_iptables_restore_failures_total",
			Help: "Cumulative proxy rules restore failures (iptables-restore or nft -f)"}),
		servicePorts: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keelson_agent_proxy_service_ports",
			Help: "Service ports the last successful sync programmed, per IP family"}, []string{"family"}),
	}
	reg.MustRegister(m.syncDuration, m.fullDuration, m.partialDuration, m.lastSync, m.failures, m.servicePorts)
	return m
}

func (m *proxyMetrics) synced(s proxy.SyncStats) {
	d := s.Duration.Seconds()
	m.syncDuration.Observe(d)
	if s.Full {
		m.fullDuration.Observe(d)
	} else {
		m.partialDuration.Observe(d)
	}
	m.lastSync.Set(float64(s.Start.Add(s.Duration).UnixNano()) / float64(time.Second))
	m.servicePorts.WithLabelValues(string(s.Family)).Set(float64(s.Ports))
}

func (m *proxyMetrics) failed(v1.IPFamily, error) { m.failures.Inc() }
