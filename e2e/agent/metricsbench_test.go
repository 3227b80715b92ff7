package agent

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkMetricsScrape measures what one scrape of each of the agent's
// metrics and stats endpoints costs the agent, with KEELSON_BENCH_PODS
// (default 100) pods running on its node: the agent's CPU time per scrape
// (user + system, from /proc) and the size of the answer. Run it as root:
//
//	go test -run '^$' -bench MetricsScrape -benchtime 20x ./e2e/agent/
func BenchmarkMetricsScrape(b *testing.B) {
	pods := 100
	if s := os.Getenv("KEELSON_BENCH_PODS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("KEELSON_BENCH_PODS=%q: want a positive number of pods", s)
		}
		pods = n
	}
	c := startCluster(b)
	ns := c.namespace(b, "scrape")
	for started := 0; started < pods; started += 25 {
		c.startPods(b, ns, min(25, pods-started), started)
	}
	get := c.kubeletClient(b)
	pid := c.agent.PID()
	for _, path := range []string{"/metrics", "/metrics/resource", "/metrics/cadvisor", "/metrics/probes", "/stats/summary"} {
		b.Run(strings.TrimPrefix(path, "/"), func(b *testing.B) {
			code, body := get(path, true)
			if code != 200 {
				b.Fatalf("GET %s: %d %s", path, code, body)
			}
			if n := strings.Count(string(body), "\ncontainer_cpu_usage_seconds_total{"); path == "/metrics/resource" && n != pods {
				b.Fatalf("GET %s: %d containers' CPU; want one per pod, %d; missing: %s", path, n, pods, c.missingPods(b, ns, body))
			}
			cpu0 := cpuSeconds(b, pid)
			size := 0
			b.ResetTimer()
			for range b.N {
				code, body := get(path, true)
				if code != 200 {
					b.Fatalf("GET %s: %d", path, code)
				}
				size = len(body)
			}
			b.StopTimer()
			spent := time.Duration((cpuSeconds(b, pid) - cpu0) * float64(time.Second))
			b.ReportMetric(float64(spent.Microseconds())/1000/float64(b.N), "agent-cpu-ms/scrape")
			b.ReportMetric(float64(size)/1024, "KiB/scrape")
			b.ReportMetric(float64(pods), "pods")
		})
	}
}

// cpuSeconds is the user plus system CPU time pid has used, from
// /proc/PID/stat (clock ticks of 1/100 s, Linux's USER_HZ).
func cpuSeconds(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name may hold spaces: fields are counted after its ')'.
	f := strings.Fields(string(data)[strings.LastIndexByte(string(data), ')')+2:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// missingPods describes the pods of ns that body names no container of:
// their phase and their containers' states and restarts.
func (c *cluster) missingPods(b *testing.B, ns, body string) string {
	l, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, p := range l.Items {
		if strings.Contains(body, `pod="`+p.Name+`"`) {
			continue
		}
		d := p.Name + " " + string(p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			d += fmt.Sprintf(" %s(restarts %d, running %v, waiting %v, terminated %v)", cs.Name, cs.RestartCount,
				cs.State.Running != nil, cs.State.Waiting, cs.State.Terminated)
		}
		out = append(out, d)
	}
	return strings.Join(out, "; ")
}
