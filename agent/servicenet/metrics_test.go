package servicenet

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/agent/proxy"
)

// TestProxyMetrics: syncs are timed under kube-proxy's names, full and
// partial apart; the last success is stamped; failures are counted.
func TestProxyMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newProxyMetrics(reg)
	start := time.Unix(1700000000, 0)
	m.synced(proxy.SyncStats{Family: v1.IPv4Protocol, Start: start, Duration: 300 * time.Millisecond, Full: true, Ports: 12})
	m.synced(proxy.SyncStats{Family: v1.IPv4Protocol, Start: start.Add(time.Minute), Duration: 20 * time.Millisecond, Ports: 13})
	m.failed(v1.IPv4Protocol, errors.New("iptables-restore: exit status 1"))
	want := `
# HELP kubeproxy_sync_proxy_rules_iptables_restore_failures_total Cumulative proxy rules restore failures (iptables-restore or nft -f)
# TYPE kubeproxy_sync_proxy_rules_iptables_restore_failures_total counter
kubeproxy_sync_proxy_rules_iptables_restore_failures_total 1
# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds The last time proxy rules were successfully synced
# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge
kubeproxy_sync_proxy_rules_last_timestamp_seconds 1.70000006002e+09
# HELP keelson_agent_proxy_service_ports Service ports the last successful sync programmed, per IP family
# TYPE keelson_agent_proxy_service_ports gauge
keelson_agent_proxy_service_ports{family="IPv4"} 13
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
		"kubeproxy_sync_proxy_rules_last_timestamp_seconds", "keelson_agent_proxy_service_ports"); err != nil {
		t.Error(err)
	}
	for name, n := range map[string]uint64{"kubeproxy_sync_proxy_rules_duration_seconds": 2,
		"kubeproxy_sync_full_proxy_rules_duration_seconds": 1, "kubeproxy_sync_partial_proxy_rules_duration_seconds": 1} {
		if got := sampleCount(t, reg, name); got != n {
			t.Errorf("%s counted %d syncs; want %d", name, got, n)
		}
	}
}

func sampleCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}
