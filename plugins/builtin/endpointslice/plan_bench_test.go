package endpointslice

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func benchPods(n int) []*corev1.Pod {
	pods := make([]*corev1.Pod, n)
	for i := range pods {
		pods[i] = pod(fmt.Sprintf("p%d", i), fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256), "node-a", 8080, i%10 != 0)
	}
	return pods
}

// BenchmarkPlan1000Pods measures one reconcile's computation for a
// Service of 1000 pods: from scratch, and in the steady state where
// nothing changed (the common case on every pod event).
func BenchmarkPlan1000Pods(b *testing.B) {
	svc := service(corev1.ServiceSpec{})
	pods := benchPods(1000)
	b.Run("FromScratch", func(b *testing.B) {
		for b.Loop() {
			computePlan(svc, pods, nil, nodes, 100)
		}
	})
	n := 0
	p, _ := computePlan(svc, pods, nil, nodes, 100)
	stored := apply(nil, p, &n)
	b.Run("Unchanged", func(b *testing.B) {
		for b.Loop() {
			if p, _ := computePlan(svc, pods, stored, nodes, 100); len(p.Update) != 0 {
				b.Fatal("steady state rewritten")
			}
		}
	})
}
