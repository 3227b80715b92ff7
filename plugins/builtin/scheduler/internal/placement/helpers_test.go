package placement

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

// Test objects: nodes with 4 cpu, 8 GiB and 110 pods, Ready; pods with one
// container asking for nothing, in namespace "ns".

func node(name string, opts ...func(*v1.Node)) *v1.Node {
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelHostname: name}},
		Status: v1.NodeStatus{
			Allocatable: v1.ResourceList{
				v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("8Gi"),
				v1.ResourcePods: resource.MustParse("110"),
			},
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func withLabels(kv ...string) func(*v1.Node) {
	return func(n *v1.Node) {
		for i := 0; i+1 < len(kv); i += 2 {
			n.Labels[kv[i]] = kv[i+1]
		}
	}
}

func withTaint(key, value string, effect v1.TaintEffect) func(*v1.Node) {
	return func(n *v1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: key, Value: value, Effect: effect})
	}
}

func withAllocatable(name v1.ResourceName, qty string) func(*v1.Node) {
	return func(n *v1.Node) { n.Status.Allocatable[name] = resource.MustParse(qty) }
}

func withReady(s v1.ConditionStatus) func(*v1.Node) {
	return func(n *v1.Node) { n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: s}} }
}

var uidSeq int

func pod(name string, opts ...func(*v1.Pod)) *v1.Pod {
	uidSeq++
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(fmt.Sprintf("%s-%d", name, uidSeq))},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c"}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func onNode(n string) func(*v1.Pod) { return func(p *v1.Pod) { p.Spec.NodeName = n } }

func req(cpu, mem string) func(*v1.Pod) {
	return func(p *v1.Pod) {
		rl := v1.ResourceList{}
		if cpu != "" {
			rl[v1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			rl[v1.ResourceMemory] = resource.MustParse(mem)
		}
		p.Spec.Containers[0].Resources.Requests = rl
	}
}

func withPodLabels(kv ...string) func(*v1.Pod) {
	return func(p *v1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func withPriority(prio int32) func(*v1.Pod) {
	return func(p *v1.Pod) { p.Spec.Priority = &prio }
}

func tolerate(key string, op v1.TolerationOperator, value string, effect v1.TaintEffect) func(*v1.Pod) {
	return func(p *v1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, v1.Toleration{Key: key, Operator: op, Value: value, Effect: effect})
	}
}

func hostPort(port int32, proto v1.Protocol, ip string) func(*v1.Pod) {
	return func(p *v1.Pod) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, v1.ContainerPort{ContainerPort: port, HostPort: port, Protocol: proto, HostIP: ip})
	}
}

// world is a cluster model built from objects.
func world(nodes []*v1.Node, pods ...*v1.Pod) *cluster.Cache {
	c := cluster.NewCache()
	for _, n := range nodes {
		c.SetNode(n)
	}
	for _, p := range pods {
		c.SetPod(p)
	}
	return c
}

func testEngine(cfg Config, l Listers) *Engine {
	if cfg.Weights == (Weights{}) {
		cfg.Weights = DefaultWeights()
	}
	if cfg.HardPodAffinityWeight == 0 {
		cfg.HardPodAffinityWeight = 1
	}
	if cfg.MinCandidateNodesAbsolute == 0 {
		cfg.MinCandidateNodesAbsolute = 100
		cfg.MinCandidateNodesPercentage = 10
	}
	return New(cfg, l, rand.New(rand.NewPCG(1, 2)))
}

// verdicts runs the pre-checks and every filter for p on each node and
// returns the reasons per node ("" for a fit), or the pre-check rejection
// under the key "*".
func verdicts(t *testing.T, e *Engine, w *cluster.Cache, p *v1.Pod) map[string]string {
	t.Helper()
	c, st, err := e.newCycle(context.Background(), w, nil, cluster.NewPodInfo(p), w.Nodes())
	if err != nil {
		t.Fatalf("pre-checks: %v", err)
	}
	if !st.OK() {
		return map[string]string{"*": st.Message()}
	}
	out := map[string]string{}
	nodes := w.Nodes()
	if c.restrictedBy != 0 {
		nodes = c.restricted
	}
	for _, n := range nodes {
		out[n.Name] = c.filter(n).Message()
	}
	return out
}

// fits lists the nodes p fits, sorted.
func fits(t *testing.T, e *Engine, w *cluster.Cache, p *v1.Pod) []string {
	t.Helper()
	var out []string
	for n, r := range verdicts(t, e, w, p) {
		if r == "" && n != "*" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// indexer builds a lister backing store holding objs.
func indexer(objs ...any) cache.Indexer {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, o := range objs {
		if err := idx.Add(o); err != nil {
			panic(err)
		}
	}
	return idx
}

func podInfo(p *v1.Pod) *cluster.PodInfo { return cluster.NewPodInfo(p) }
