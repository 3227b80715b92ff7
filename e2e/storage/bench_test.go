package storage

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/e2e/harness"
)

// BenchmarkProvisionAndBind measures, on one node, the time from creating
// 100 claims of the default (local-path, WaitForFirstConsumer) class and
// 100 pods using them until every claim is Bound and every pod bound to
// the node (bound-s), and until every pod runs (running-s). Run it as
// root:
//
//	go test -run '^$' -bench ProvisionAndBind -benchtime 1x ./e2e/storage/
func BenchmarkProvisionAndBind(b *testing.B) {
	const n = 100
	c := startCluster(b)
	cfg := c.server.RESTConfig(b)
	cfg.QPS, cfg.Burst = 200, 400
	fast, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	c.client = fast
	harness.Eventually(b, waitTimeout, "StorageClass local-path exists", func() (bool, string) {
		_, err := c.client.StorageV1().StorageClasses().Get(context.Background(), "local-path", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	var bound, running time.Duration
	for i := 0; i < b.N; i++ {
		ns := c.namespace(b, fmt.Sprintf("bench%d", i))
		start := time.Now()
		for j := 0; j < n; j++ {
			name := fmt.Sprintf("data-%d", j)
			c.claim(b, ns, name, "16Mi", nil)
			c.shellPod(b, ns, fmt.Sprintf("pod-%d", j), name, "exec sleep 3600")
		}
		c.waitAll(b, ns, n, func(claims []v1.PersistentVolumeClaim, pods []v1.Pod) bool {
			return countClaims(claims, v1.ClaimBound) == n && countScheduled(pods) == n
		})
		bound += time.Since(start)
		c.waitAll(b, ns, n, func(_ []v1.PersistentVolumeClaim, pods []v1.Pod) bool { return countRunning(pods) == n })
		running += time.Since(start)
		if err := c.client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
		waitGone(b, "namespace "+ns, func() error {
			_, err := c.client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
			return err
		})
	}
	b.ReportMetric(bound.Seconds()/float64(b.N), "bound-s")
	b.ReportMetric(running.Seconds()/float64(b.N), "running-s")
}

// waitAll polls the namespace's claims and pods until done says so.
func (c *cluster) waitAll(b testing.TB, ns string, n int, done func([]v1.PersistentVolumeClaim, []v1.Pod) bool) {
	b.Helper()
	ctx := context.Background()
	harness.Eventually(b, 10*time.Minute, fmt.Sprintf("%d claims and pods in %s", n, ns), func() (bool, string) {
		claims, err := c.client.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		pods, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		return done(claims.Items, pods.Items), fmt.Sprintf("bound %d, scheduled %d, running %d",
			countClaims(claims.Items, v1.ClaimBound), countScheduled(pods.Items), countRunning(pods.Items))
	})
}

func countClaims(l []v1.PersistentVolumeClaim, phase v1.PersistentVolumeClaimPhase) int {
	n := 0
	for _, c := range l {
		if c.Status.Phase == phase {
			n++
		}
	}
	return n
}

func countScheduled(l []v1.Pod) int {
	n := 0
	for _, p := range l {
		if p.Spec.NodeName != "" {
			n++
		}
	}
	return n
}

func countRunning(l []v1.Pod) int {
	n := 0
	for _, p := range l {
		if p.Status.Phase == v1.PodRunning {
			n++
		}
	}
	return n
}
