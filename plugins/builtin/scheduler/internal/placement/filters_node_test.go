package placement

import (
	"maps"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestFilterNodeName(t *testing.T) {
	e := testEngine(Config{}, Listers{})
	w := world([]*v1.Node{node("a"), node("b")})
	p := pod("p", func(p *v1.Pod) { p.Spec.NodeName = "b" })
	got := verdicts(t, e, w, p)
	want := map[string]string{"b": ""}
	if !maps.Equal(got, want) {
		t.Fatalf("verdicts = %v, want only b considered and fitting: %v", got, want)
	}
	missing := pod("q", func(p *v1.Pod) { p.Spec.NodeName = "gone" })
	if got := verdicts(t, e, w, missing); len(got) != 0 {
		t.Fatalf("a pod naming a missing node was tried on %v", got)
	}
	c, _, _ := e.newCycle(t.Context(), w, nil, podInfo(p), w.Nodes())
	if st := c.filterNodeName(w.Node("a")); st.Message() != reasonNodeName || st.Code != UnschedulableAndUnresolvable {
		t.Fatalf("node a: %+v, want %q unresolvable", st, reasonNodeName)
	}
}

func TestFilterUnschedulableAndTaints(t *testing.T) {
	cordoned := func(n *v1.Node) { n.Spec.Unschedulable = true }
	nodes := []*v1.Node{
		node("plain"),
		node("cordoned", cordoned),
		node("noschedule", withTaint("dedicated", "db", v1.TaintEffectNoSchedule)),
		node("noexecute", withTaint("dedicated", "db", v1.TaintEffectNoExecute)),
		node("prefer", withTaint("dedicated", "db", v1.TaintEffectPreferNoSchedule)),
		node("notready", withReady(v1.ConditionFalse)),
		node("unknown", withReady(v1.ConditionUnknown)),
		node("silent", func(n *v1.Node) { n.Status.Conditions = nil }),
		node("memory", func(n *v1.Node) {
			n.Status.Conditions = append(n.Status.Conditions, v1.NodeCondition{Type: v1.NodeMemoryPressure, Status: v1.ConditionTrue})
		}),
	}
	e := testEngine(Config{}, Listers{})
	w := world(nodes)
	tests := []struct {
		name string
		pod  *v1.Pod
		want []string
	}{
		{"no tolerations", pod("p"), []string{"plain", "prefer"}},
		{"tolerates the db taint with Equal", pod("p", tolerate("dedicated", v1.TolerationOpEqual, "db", "")),
			[]string{"noexecute", "noschedule", "plain", "prefer"}},
		{"tolerates only NoSchedule", pod("p", tolerate("dedicated", v1.TolerationOpExists, "", v1.TaintEffectNoSchedule)),
			[]string{"noschedule", "plain", "prefer"}},
		{"wrong value", pod("p", tolerate("dedicated", v1.TolerationOpEqual, "web", "")), []string{"plain", "prefer"}},
		{"tolerates cordoned nodes", pod("p", tolerate(v1.TaintNodeUnschedulable, v1.TolerationOpExists, "", v1.TaintEffectNoSchedule)),
			[]string{"cordoned", "plain", "prefer"}},
		{"tolerates not-ready", pod("p", tolerate(v1.TaintNodeNotReady, v1.TolerationOpExists, "", "")),
			[]string{"notready", "plain", "prefer"}},
		{"tolerates unreachable", pod("p", tolerate(v1.TaintNodeUnreachable, v1.TolerationOpExists, "", "")),
			[]string{"plain", "prefer", "silent", "unknown"}},
		{"tolerates everything", pod("p", tolerate("", v1.TolerationOpExists, "", "")),
			[]string{"cordoned", "memory", "noexecute", "noschedule", "notready", "plain", "prefer", "silent", "unknown"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fits(t, e, w, tc.pod); !slices.Equal(got, tc.want) {
				t.Fatalf("fits %v, want %v", got, tc.want)
			}
		})
	}
	got := verdicts(t, e, w, pod("p"))
	if got["cordoned"] != reasonUnschedulable || got["noschedule"] != reasonUntoleratedTaint || got["notready"] != reasonUntoleratedTaint {
		t.Fatalf("reasons = %v", got)
	}
}

func TestFilterNodeAffinity(t *testing.T) {
	nodes := []*v1.Node{
		node("a", withLabels("zone", "z1", "gen", "3", "ssd", "")),
		node("b", withLabels("zone", "z2", "gen", "5")),
		node("c", withLabels("gen", "7")),
	}
	e := testEngine(Config{}, Listers{})
	w := world(nodes)
	required := func(terms ...v1.NodeSelectorTerm) func(*v1.Pod) {
		return func(p *v1.Pod) {
			p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{NodeSelectorTerms: terms},
			}}
		}
	}
	expr := func(key string, op v1.NodeSelectorOperator, values ...string) v1.NodeSelectorTerm {
		return v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}
	}
	tests := []struct {
		name string
		pod  *v1.Pod
		want []string
	}{
		{"nodeSelector", pod("p", func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{"zone": "z2"} }), []string{"b"}},
		{"In", pod("p", required(expr("zone", v1.NodeSelectorOpIn, "z1", "z9"))), []string{"a"}},
		{"NotIn", pod("p", required(expr("zone", v1.NodeSelectorOpNotIn, "z1"))), []string{"b", "c"}},
		{"Exists", pod("p", required(expr("ssd", v1.NodeSelectorOpExists))), []string{"a"}},
		{"DoesNotExist", pod("p", required(expr("zone", v1.NodeSelectorOpDoesNotExist))), []string{"c"}},
		{"Gt", pod("p", required(expr("gen", v1.NodeSelectorOpGt, "4"))), []string{"b", "c"}},
		{"Lt", pod("p", required(expr("gen", v1.NodeSelectorOpLt, "6"))), []string{"a", "b"}},
		{"terms are ORed", pod("p", required(expr("zone", v1.NodeSelectorOpIn, "z1"), expr("gen", v1.NodeSelectorOpIn, "7"))), []string{"a", "c"}},
		{"selector and affinity both apply", pod("p", required(expr("gen", v1.NodeSelectorOpGt, "2")), func(p *v1.Pod) {
			p.Spec.NodeSelector = map[string]string{"zone": "z1"}
		}), []string{"a"}},
		{"matchFields on the name", pod("p", required(v1.NodeSelectorTerm{MatchFields: []v1.NodeSelectorRequirement{
			{Key: metav1.ObjectNameField, Operator: v1.NodeSelectorOpIn, Values: []string{"c"}},
		}})), []string{"c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fits(t, e, w, tc.pod); !slices.Equal(got, tc.want) {
				t.Fatalf("fits %v, want %v", got, tc.want)
			}
		})
	}
	if got := verdicts(t, e, w, pod("p", required(expr("zone", v1.NodeSelectorOpIn, "z9")))); got["a"] != reasonNodeAffinity {
		t.Fatalf("reason = %q, want %q", got["a"], reasonNodeAffinity)
	}
	conflict := pod("p", required(v1.NodeSelectorTerm{MatchFields: []v1.NodeSelectorRequirement{
		{Key: metav1.ObjectNameField, Operator: v1.NodeSelectorOpIn, Values: []string{"a"}},
		{Key: metav1.ObjectNameField, Operator: v1.NodeSelectorOpIn, Values: []string{"b"}},
	}}))
	if got := verdicts(t, e, w, conflict)["*"]; got != reasonAffinityConflict {
		t.Fatalf("pre-check = %q, want %q", got, reasonAffinityConflict)
	}
}

func TestFilterPorts(t *testing.T) {
	e := testEngine(Config{}, Listers{})
	w := world([]*v1.Node{node("a")},
		pod("web", onNode("a"), hostPort(80, v1.ProtocolTCP, "")),
		pod("dns", onNode("a"), hostPort(53, v1.ProtocolUDP, "10.0.0.1")))
	tests := []struct {
		name string
		pod  *v1.Pod
		fits bool
	}{
		{"same port and protocol", pod("p", hostPort(80, v1.ProtocolTCP, "")), false},
		{"same port on a specific address clashes with the wildcard", pod("p", hostPort(80, v1.ProtocolTCP, "10.0.0.2")), false},
		{"other protocol", pod("p", hostPort(80, v1.ProtocolUDP, "")), true},
		{"other address", pod("p", hostPort(53, v1.ProtocolUDP, "10.0.0.2")), true},
		{"wildcard clashes with any address", pod("p", hostPort(53, v1.ProtocolUDP, "")), false},
		{"free port", pod("p", hostPort(8080, v1.ProtocolTCP, "")), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := verdicts(t, e, w, tc.pod)["a"]
			if (got == "") != tc.fits {
				t.Fatalf("verdict %q, want fit=%v", got, tc.fits)
			}
			if !tc.fits && got != reasonNodePorts {
				t.Fatalf("reason %q, want %q", got, reasonNodePorts)
			}
		})
	}
}

func TestFilterResources(t *testing.T) {
	nodes := []*v1.Node{
		node("a", withAllocatable("example.com/gpu", "2"), withAllocatable(v1.ResourceEphemeralStorage, "10Gi")),
		node("tiny", withAllocatable(v1.ResourcePods, "1")),
	}
	e := testEngine(Config{}, Listers{})
	w := world(nodes, pod("used", onNode("a"), req("3", "6Gi")))
	gpu := func(n string) func(*v1.Pod) {
		return func(p *v1.Pod) {
			p.Spec.Containers[0].Resources.Requests["example.com/gpu"] = resource.MustParse(n)
		}
	}
	tests := []struct {
		name       string
		pod        *v1.Pod
		node       string
		want       string
		unresolved bool
	}{
		{"fits", pod("p", req("1", "2Gi")), "a", "", false},
		{"cpu short", pod("p", req("1500m", "1Gi")), "a", "Insufficient cpu", false},
		{"more cpu than the node has", pod("p", req("5", "1Gi")), "a", "Insufficient cpu", true},
		{"cpu and memory short", pod("p", req("2", "3Gi")), "a", "Insufficient cpu, Insufficient memory", false},
		{"extended resource", pod("p", req("100m", ""), gpu("2")), "a", "", false},
		{"extended resource short", pod("p", req("100m", ""), gpu("3")), "a", "Insufficient example.com/gpu", true},
		{"extended resource the node lacks", pod("p", req("100m", ""), gpu("1")), "tiny", "Insufficient example.com/gpu", true},
		{"ephemeral storage", pod("p", func(p *v1.Pod) {
			p.Spec.Containers[0].Resources.Requests = v1.ResourceList{v1.ResourceEphemeralStorage: resource.MustParse("11Gi")}
		}), "a", "Insufficient ephemeral-storage", true},
		{"pod count", pod("p"), "tiny", "", false},
		{"overhead counts", pod("p", req("500m", ""), func(p *v1.Pod) {
			p.Spec.Overhead = v1.ResourceList{v1.ResourceCPU: resource.MustParse("600m")}
		}), "a", "Insufficient cpu", false},
		{"init containers count at their peak", pod("p", req("100m", ""), func(p *v1.Pod) {
			p.Spec.InitContainers = []v1.Container{{Name: "init", Resources: v1.ResourceRequirements{
				Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1500m")}}}}
		}), "a", "Insufficient cpu", false},
		{"sidecars add up", pod("p", req("600m", ""), func(p *v1.Pod) {
			p.Spec.InitContainers = []v1.Container{{Name: "sidecar", RestartPolicy: ptr.To(v1.ContainerRestartPolicyAlways),
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("500m")}}}}
		}), "a", "Insufficient cpu", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := e.newCycle(t.Context(), w, nil, podInfo(tc.pod), w.Nodes())
			if err != nil {
				t.Fatal(err)
			}
			st := c.filterResources(w.Node(tc.node))
			if st.Message() != tc.want {
				t.Fatalf("verdict %q, want %q", st.Message(), tc.want)
			}
			if !st.OK() && (st.Code == UnschedulableAndUnresolvable) != tc.unresolved {
				t.Fatalf("code %v, want unresolvable=%v", st.Code, tc.unresolved)
			}
		})
	}
	full := world([]*v1.Node{node("tiny", withAllocatable(v1.ResourcePods, "1"))}, pod("one", onNode("tiny")))
	if got := verdicts(t, e, full, pod("p"))["tiny"]; got != reasonTooManyPods {
		t.Fatalf("full node: %q, want %q", got, reasonTooManyPods)
	}
}
