package placement

import (
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

// BenchmarkSchedule measures one scheduling cycle (filter a sample, score
// it, pick a node, assume the pod there) on clusters already holding ten
// pods per node: the placement cost alone, without the API server.
func BenchmarkSchedule(b *testing.B) {
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
		Spec:       appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}
	listers := Listers{ReplicaSets: appslisters.NewReplicaSetLister(indexer(rs)), Services: corelisters.NewServiceLister(indexer())}
	replica := func(p *v1.Pod) {
		p.Labels = map[string]string{"app": "web"}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", Controller: new(true)}}
	}
	for _, nodes := range []int{1000, 5000} {
		for _, workload := range []struct {
			name string
			opts []func(*v1.Pod)
		}{
			{"bare", nil},
			{"replicaset", []func(*v1.Pod){replica}},
		} {
			b.Run(fmt.Sprintf("nodes=%d/%s", nodes, workload.name), func(b *testing.B) {
				w := benchWorld(nodes, workload.opts)
				e := testEngine(Config{Parallelism: 2, SystemDefaultSpreading: true}, listers)
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					pi := cluster.NewPodInfo(pod(fmt.Sprintf("new-%d", i), append([]func(*v1.Pod){req("100m", "128Mi")}, workload.opts...)...))
					res, err := e.Schedule(b.Context(), w, nil, pi)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := w.AssumePod(pi, res.Node); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// benchWorld is nodes kwok-style nodes in four zones with ten pods each.
func benchWorld(nodes int, opts []func(*v1.Pod)) *cluster.Cache {
	w := cluster.NewCache()
	for i := range nodes {
		name := fmt.Sprintf("node-%05d", i)
		w.SetNode(node(name, withLabels(v1.LabelTopologyZone, fmt.Sprintf("zone-%d", i%4)),
			withAllocatable(v1.ResourceCPU, "32"), withAllocatable(v1.ResourceMemory, "256Gi")))
		for j := range 10 {
			w.SetPod(pod(fmt.Sprintf("%s-%d", name, j), append([]func(*v1.Pod){onNode(name), req("100m", "128Mi")}, opts...)...))
		}
	}
	return w
}
