package cluster

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func testNode(name, zone string) *v1.Node {
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}},
		Status: v1.NodeStatus{
			Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("8Gi"), v1.ResourcePods: resource.MustParse("110")},
			Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
		},
	}
	if zone != "" {
		n.Labels[v1.LabelTopologyZone] = zone
	}
	return n
}

func testPod(name, node, cpu string) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name)},
		Spec: v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)},
		}}}},
	}
}

func TestAssumeConfirmForget(t *testing.T) {
	c := NewCache()
	c.SetNode(testNode("a", ""))
	pending := testPod("p", "", "1")
	assumed, err := c.AssumePod(NewPodInfo(pending), "a")
	if err != nil {
		t.Fatal(err)
	}
	if pending.Spec.NodeName != "" || assumed.Pod.Spec.NodeName != "a" {
		t.Fatal("assuming must not modify the informer's pod, and must set nodeName on its copy")
	}
	if got := c.Node("a").Requested.MilliCPU; got != 1000 || !c.IsAssumed("p") {
		t.Fatalf("requested %dm after assume, want 1000m", got)
	}
	if _, err := c.AssumePod(NewPodInfo(pending), "a"); err == nil {
		t.Fatal("assuming a pod twice succeeded")
	}
	c.SetPod(testPod("p", "a", "1"))
	if c.IsAssumed("p") || c.Node("a").Requested.MilliCPU != 1000 || len(c.Node("a").Pods) != 1 {
		t.Fatal("the informer's bound pod must replace the assumed one, counted once")
	}
	c.ForgetPod("p")
	if c.Node("a").Requested.MilliCPU != 1000 {
		t.Fatal("forgetting a confirmed pod removed it")
	}

	if _, err := c.AssumePod(NewPodInfo(testPod("q", "", "2")), "a"); err != nil {
		t.Fatal(err)
	}
	gen := c.Node("a").Generation
	c.ForgetPod("q")
	if c.Node("a").Requested.MilliCPU != 1000 || c.Node("a").Generation == gen {
		t.Fatal("forgetting an assumed pod must free its requests and bump the node's generation")
	}
}

func TestPodsBeforeTheirNodeAndAfterIt(t *testing.T) {
	c := NewCache()
	c.SetPod(testPod("early", "late-node", "500m"))
	if c.Node("late-node") != nil || len(c.Nodes()) != 0 {
		t.Fatal("a node known only from its pods must not be schedulable")
	}
	c.SetNode(testNode("late-node", ""))
	if got := c.Node("late-node").Requested.MilliCPU; got != 500 {
		t.Fatalf("requested %dm, want the early pod's 500m", got)
	}
	c.RemoveNode("late-node")
	if c.Node("late-node") != nil || len(c.Nodes()) != 0 {
		t.Fatal("removed node still listed")
	}
	c.SetNode(testNode("late-node", ""))
	if got := c.Node("late-node").Requested.MilliCPU; got != 500 {
		t.Fatalf("a node that comes back must still count its pods: %dm", got)
	}
	if node := c.RemovePod("early"); node != "late-node" {
		t.Fatalf("RemovePod returned %q", node)
	}
}

func TestNodesInterleaveZones(t *testing.T) {
	c := NewCache()
	for _, n := range []struct{ name, zone string }{{"a1", "a"}, {"a2", "a"}, {"a3", "a"}, {"b1", "b"}, {"c1", "c"}, {"c2", "c"}} {
		c.SetNode(testNode(n.name, n.zone))
	}
	var names []string
	for _, n := range c.Nodes() {
		names = append(names, n.Name)
	}
	want := []string{"a1", "b1", "c1", "a2", "c2", "a3"}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("scan order %v, want %v", names, want)
		}
	}
}

func TestConditionTaints(t *testing.T) {
	n := testNode("a", "")
	n.Spec.Taints = []v1.Taint{{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoSchedule}}
	n.Status.Conditions = []v1.NodeCondition{
		{Type: v1.NodeReady, Status: v1.ConditionFalse},
		{Type: v1.NodeDiskPressure, Status: v1.ConditionTrue},
	}
	got := effectiveTaints(n)
	if len(got) != 2 || got[0].Key != v1.TaintNodeNotReady || got[1].Key != v1.TaintNodeDiskPressure {
		t.Fatalf("taints %v, want not-ready once and disk-pressure", got)
	}
}

func TestHostPorts(t *testing.T) {
	var h HostPorts
	h.Add("", "", 80)
	h.Add("", "TCP", 80)
	h.Remove("0.0.0.0", "TCP", 80)
	if !h.Conflicts("10.0.0.1", "TCP", 80) {
		t.Fatal("one of two uses removed, the port must still be taken")
	}
	h.Remove("", "", 80)
	if h.Conflicts("", "", 80) || h.Len() != 0 {
		t.Fatal("port still taken after both uses were removed")
	}
}

func TestSlotsAreReused(t *testing.T) {
	c := NewCache()
	c.SetNode(testNode("a", ""))
	c.SetNode(testNode("b", ""))
	a, b := c.Node("a"), c.Node("b")
	if a.Slot == b.Slot {
		t.Fatalf("nodes a and b share slot %d", a.Slot)
	}
	gen := a.Generation
	c.RemoveNode("a")
	c.SetNode(testNode("c", ""))
	if got := c.Node("c"); got.Slot != a.Slot || got.Generation <= gen {
		t.Fatalf("node c: slot %d generation %d; want a's slot %d with a newer generation than %d", got.Slot, got.Generation, a.Slot, gen)
	}
}
