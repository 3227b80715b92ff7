package agent

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// BenchmarkPodStartup measures pod startup latency on one node: from the
// Create call until a watch shows the pod Running, with the image already
// present, for batches of 1, 10 and 30 pods created at once. It reports the
// p50 and p99 over every pod of every iteration, and the agent's resident
// memory while the 30 pods run. Run it as root:
//
//	go test -run '^$' -bench PodStartup -benchtime 3x ./e2e/agent/
func BenchmarkPodStartup(b *testing.B) {
	c := startCluster(b)
	// Creates must not wait on client-side throttling: it would count as
	// startup latency.
	cfg := c.server.RESTConfig(b)
	cfg.QPS, cfg.Burst = 200, 400
	// Its bare test pods draw the restricted Pod Security warning on every
	// create, which would bury the benchmark's own lines.
	cfg.WarningHandler = rest.NoWarnings{}
	fast, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	c.client = fast
	for _, n := range []int{1, 10, 30} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			b.StopTimer()
			ns := c.namespace(b, fmt.Sprintf("bench%d", n))
			var all []time.Duration
			var rss, anon float64
			for i := 0; i < b.N; i++ {
				lat := c.startPods(b, ns, n, i)
				all = append(all, lat...)
				if i == b.N-1 && n == 30 {
					rss, anon = residentMiB(b, c.agent.PID())
				}
				c.deletePods(b, ns)
			}
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			b.ReportMetric(pct(all, 50).Seconds()*1000, "p50-ms")
			b.ReportMetric(pct(all, 99).Seconds()*1000, "p99-ms")
			if rss > 0 {
				b.ReportMetric(rss, "agent-rss-MiB")
				b.ReportMetric(anon, "agent-rssanon-MiB")
			}
		})
	}
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// startPods creates n pods at once and returns, per pod, the time from its
// Create call until the watch reported it Running.
func (c *cluster) startPods(b *testing.B, ns string, n, round int) []time.Duration {
	ctx := context.Background()
	w, err := c.client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { w.Stop() }() // the last watch, after any rewatch
	var mu sync.Mutex
	created := map[string]time.Time{}
	b.StartTimer()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("p%d-%d", round, i)
		wg.Go(func() {
			pod := benchPod(name, c.node)
			start := time.Now()
			if _, err := c.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			created[name] = start
			mu.Unlock()
		})
	}
	var out []time.Duration
	seen := map[string]bool{}
	observe := func(p *v1.Pod) {
		if seen[p.Name] || p.Status.Phase != v1.PodRunning {
			return
		}
		now := time.Now()
		seen[p.Name] = true
		mu.Lock()
		start, ok := created[p.Name]
		mu.Unlock()
		if !ok {
			// The watch was faster than the Create call's return, or the
			// pod is an earlier round's (the watch sees the namespace):
			// only this round's pods count.
			wg.Wait()
			if start, ok = created[p.Name]; !ok {
				return
			}
		}
		out = append(out, now.Sub(start))
	}
	timeout := time.After(5 * time.Minute)
	for len(out) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				// The server ended the watch (a loaded machine): pods seen
				// Running in a fresh list count from now, which only
				// overstates their latency.
				w = c.rewatch(b, ns, func(p *v1.Pod) { observe(p) })
				continue
			}
			if p, isPod := ev.Object.(*v1.Pod); isPod && ev.Type != watch.Deleted {
				observe(p)
			}
		case <-timeout:
			b.Fatalf("only %d of %d pods running after 5 minutes", len(out), n)
		}
	}
	b.StopTimer()
	wg.Wait()
	return out
}

// rewatch lists the namespace's pods, hands each to observe, and watches
// from the list's revision on.
func (c *cluster) rewatch(b *testing.B, ns string, observe func(*v1.Pod)) watch.Interface {
	ctx := context.Background()
	l, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range l.Items {
		observe(&l.Items[i])
	}
	w, err := c.client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion})
	if err != nil {
		b.Fatal(err)
	}
	return w
}

func benchPod(name, node string) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			AutomountServiceAccountToken:  ptr.To(false),
			Containers: []v1.Container{{
				Name:            "sleep",
				Image:           "keelson.test/busybox:imported",
				ImagePullPolicy: v1.PullIfNotPresent,
				Command:         []string{"sleep", "3600"},
			}},
		},
	}
}

// deletePods deletes the namespace's pods and waits until they are gone.
func (c *cluster) deletePods(b *testing.B, ns string) {
	ctx := context.Background()
	if err := c.client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{}); err != nil {
		b.Fatal(err)
	}
	harness.Eventually(b, 5*time.Minute, "the pods are gone", func() (bool, string) {
		l, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(l.Items) == 0, fmt.Sprintf("%d left", len(l.Items))
	})
}

// residentMiB reads a process's VmRSS and RssAnon (its private part) in MiB.
func residentMiB(b *testing.B, pid int) (rss, anon float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kib, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kib / 1024
		case "RssAnon:":
			anon = kib / 1024
		}
	}
	return rss, anon
}
