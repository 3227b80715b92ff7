package loadbalancer

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/e2e/harness"
)

// failoverKills is how many announcing nodes each benchmark iteration kills.
const failoverKills = 20

// BenchmarkLoadBalancerFailover kills the node announcing a LoadBalancer
// IP (its agent with kill -9, its cable pulled) 20 times on one cluster,
// bringing it back in between, and reports the client's outage, from the
// first failed request to the first successful one, as p50/p99 (and the
// time from the kill until the IP answered again). Run it as root:
//
//	go test -run '^$' -bench LoadBalancerFailover -benchtime 1x ./e2e/loadbalancer/
func BenchmarkLoadBalancerFailover(b *testing.B) {
	c := startCluster(b)
	macs := map[string]string{}
	for _, n := range agentNames {
		macs[n] = macOf(b, c.Net.Host(n))
	}
	ip := c.lbIP(200)
	c.deploy(b, "web", excludedNode, 2, v1.ServiceExternalTrafficPolicyCluster, ip)
	var gaps, recoveries []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := 0; k < failoverKills; k++ {
			owner := c.waitStableOwner(b, ip, macs)
			oldPID := c.announcerStatus(b, owner).PID
			gap, failures, took := c.killAndMeasure(b, ip, owner)
			b.Logf("kill %d of %s: outage %s (%d failed requests), kill to recovery %s", k+1, owner, gap.Round(time.Millisecond), failures, took.Round(time.Millisecond))
			gaps, recoveries = append(gaps, gap), append(recoveries, took)
			c.waitNodeReady(b, owner)
			c.waitAnnouncerRunning(b, owner, oldPID)
		}
	}
	b.StopTimer()
	b.ReportMetric(harness.Percentile(gaps, 50).Seconds(), "outage-p50-s")
	b.ReportMetric(harness.Percentile(gaps, 99).Seconds(), "outage-p99-s")
	b.ReportMetric(harness.Percentile(recoveries, 50).Seconds(), "kill-to-served-p50-s")
	b.ReportMetric(harness.Percentile(recoveries, 99).Seconds(), "kill-to-served-p99-s")
}

// waitStableOwner waits until the client is served and names the node
// whose MAC answers for ip.
func (c *lbCluster) waitStableOwner(t testing.TB, ip string, macs map[string]string) string {
	t.Helper()
	var owner string
	harness.Eventually(t, deadline, "http://"+ip+" served by a known announcer", func() (bool, string) {
		_, err := c.get(ip, 2*time.Second)
		owner = c.announcer(t, ip, macs)
		return err == nil && owner != "" && owner != excludedNode, fmt.Sprintf("owner %q err %v", owner, err)
	})
	return owner
}

type pluginStatus struct {
	State string `json:"state"`
	Ready bool   `json:"ready"`
	PID   int64  `json:"pid"`
}

// announcerStatus reads the Plugin object announcer.NODE.
func (c *lbCluster) announcerStatus(t testing.TB, node string) pluginStatus {
	t.Helper()
	raw, err := c.kube.CoreV1().RESTClient().Get().AbsPath("/apis/keelson.io/v1alpha1/plugins/announcer." + node).DoRaw(context.Background())
	if err != nil {
		t.Fatalf("reading the announcer's status on %s: %v", node, err)
	}
	var obj struct {
		Status pluginStatus `json:"status"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	return obj.Status
}

// waitAnnouncerRunning waits until node's announcer runs again, as a new
// process (the killed agent's last report still says running).
func (c *lbCluster) waitAnnouncerRunning(t testing.TB, node string, oldPID int64) {
	t.Helper()
	harness.Eventually(t, deadline, "a new announcer runs on "+node, func() (bool, string) {
		st := c.announcerStatus(t, node)
		return st.State == "running" && st.Ready && st.PID != oldPID, fmt.Sprintf("%+v", st)
	})
}
