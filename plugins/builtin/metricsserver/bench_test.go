package metricsserver

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/jonboulle/clockwork"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// textReader answers each node with a kubelet /metrics/resource text for
// its pods, whose CPU counters move on at every read, and parses it as the
// kubelet reader does.
type textReader struct {
	pods, containers int
	mu               sync.Mutex
	round            map[string]int
}

func (r *textReader) render(node string, round int) string {
	var b strings.Builder
	ts := at(15 * round).UnixMilli()
	fmt.Fprintf(&b, "# TYPE %s counter\n%s %d %d\n", nodeCPU, nodeCPU, 100+round*10, ts)
	fmt.Fprintf(&b, "# TYPE %s gauge\n%s 1.5e+09 %d\n", nodeMemory, nodeMemory, ts)
	families := []struct {
		name, typ string
		value     func(pod int) string
	}{
		{containerCPU, "counter", func(p int) string { return fmt.Sprintf("%d.5", round+p) }},
		{containerMemory, "gauge", func(p int) string { return fmt.Sprintf("%d", (p+1)<<20) }},
		{containerStartTime, "gauge", func(int) string { return "1.7e+09" }},
	}
	for _, f := range families {
		fmt.Fprintf(&b, "# TYPE %s %s\n", f.name, f.typ)
		for p := range r.pods {
			for c := range r.containers {
				fmt.Fprintf(&b, "%s{container=\"c%d\",namespace=\"ns-%s\",pod=\"web-%s-%05d\"} %s %d\n",
					f.name, c, node, node, p, f.value(p), ts)
			}
		}
	}
	return b.String()
}

func (r *textReader) read(_ context.Context, n *v1.Node) (nodeReads, error) {
	r.mu.Lock()
	r.round[n.Name]++
	round := r.round[n.Name]
	r.mu.Unlock()
	return parseResource(strings.NewReader(r.render(n.Name, round)), t0)
}

// podMeta is a pod's metadata as the API server sends it to the metadata
// informer: labels, owner, annotations and managed fields, which the
// transform drops but for the labels.
func podMeta(ns, name string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "PartialObjectMetadata"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("7b6f3c1e-0b1d-4c2e-9a77-" + name),
			ResourceVersion: "123456", GenerateName: "web-", CreationTimestamp: metav1.Now(),
			Labels:          map[string]string{"app": "web", "pod-template-hash": "6d4cf56db6"},
			Annotations:     map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-12-07T00:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-6d4cf56db6", UID: "u", Controller: ptr.To(true)}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1"}}}}
}

// BenchmarkScrape1000Pods: one scrape round of 10 nodes with 100 pods of
// 2 containers each (the kubelet text parsed, the store replaced), and
// the plugin's live heap for 1,000 pods: the store's two reads of every
// node and container plus the metadata-only pod cache, measured after GC.
// The plugin process's idle memory comes on top (README, "Resource
// metrics").
func BenchmarkScrape1000Pods(b *testing.B) {
	const nodes, podsPerNode, containers = 10, 100, 2
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var names []string
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for n := range nodes {
		node := fmt.Sprintf("n%02d", n)
		names = append(names, node)
		for p := range podsPerNode {
			obj, _ := podTransform(podMeta("ns-"+node, fmt.Sprintf("web-%s-%05d", node, p)))
			if err := pods.Add(obj); err != nil {
				b.Fatal(err)
			}
		}
	}
	st := newStore(15e9)
	s := &scraper{nodes: nodeLister(b, names...), reader: &textReader{pods: podsPerNode, containers: containers, round: map[string]int{}},
		store: st, resolution: 15e9, timeout: 10e9, clock: clockwork.NewFakeClock(), logger: slog.New(slog.DiscardHandler)}
	s.scrape(context.Background())
	s.scrape(context.Background())
	runtime.GC()
	runtime.ReadMemStats(&after)
	if _, cs, ok := st.pod(podRef{"ns-n00", "web-n00-00000"}); !ok || len(cs) != containers {
		b.Fatalf("pod web-n00-00000: %d containers with usage, ok %v; want %d", len(cs), ok, containers)
	}
	live := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	b.ResetTimer()
	for b.Loop() {
		s.scrape(context.Background())
	}
	b.ReportMetric(live/(1<<20), "live-MiB")
	b.ReportMetric(live/float64(nodes*podsPerNode), "live-B/pod")
	runtime.KeepAlive(pods)
}
