package nodelifecycle

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func withConditions(kv ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{
			Type: corev1.NodeConditionType(kv[i]), Status: corev1.ConditionStatus(kv[i+1])})
	}
	return n
}

func keys(ts []corev1.Taint) string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Key+":"+string(t.Effect))
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

func TestNoScheduleDiff(t *testing.T) {
	const (
		notReady    = "node.kubernetes.io/not-ready:NoSchedule"
		unreachable = "node.kubernetes.io/unreachable:NoSchedule"
		memory      = "node.kubernetes.io/memory-pressure:NoSchedule"
	)
	tests := []struct {
		name          string
		node          *corev1.Node
		taints        []corev1.Taint
		unschedulable bool
		add, remove   string
	}{
		{name: "healthy node: no taints",
			node: withConditions("Ready", "True", "MemoryPressure", "False", "DiskPressure", "False", "PIDPressure", "False")},
		{name: "not ready", node: withConditions("Ready", "False"), add: notReady},
		{name: "unreachable", node: withConditions("Ready", "Unknown"), add: unreachable},
		{name: "not ready becomes unreachable: swap",
			node: withConditions("Ready", "Unknown"), taints: []corev1.Taint{{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}},
			add: unreachable, remove: notReady},
		{name: "every pressure and the network",
			node: withConditions("Ready", "True", "MemoryPressure", "True", "DiskPressure", "True", "PIDPressure", "True", "NetworkUnavailable", "True"),
			add:  "node.kubernetes.io/disk-pressure:NoSchedule,node.kubernetes.io/memory-pressure:NoSchedule,node.kubernetes.io/network-unavailable:NoSchedule,node.kubernetes.io/pid-pressure:NoSchedule"},
		{name: "pressure over: taint removed", node: withConditions("Ready", "True", "MemoryPressure", "False"),
			taints: []corev1.Taint{{Key: corev1.TaintNodeMemoryPressure, Effect: corev1.TaintEffectNoSchedule}}, remove: memory},
		{name: "cordoned", node: withConditions("Ready", "True"), unschedulable: true, add: "node.kubernetes.io/unschedulable:NoSchedule"},
		{name: "uncordoned", node: withConditions("Ready", "True"),
			taints: []corev1.Taint{{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}},
			remove: "node.kubernetes.io/unschedulable:NoSchedule"},
		{name: "others' taints and NoExecute ones are left alone", node: withConditions("Ready", "True"),
			taints: []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule},
				{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}}},
	}
	for _, tc := range tests {
		tc.node.Spec.Taints, tc.node.Spec.Unschedulable = tc.taints, tc.unschedulable
		add, remove := noScheduleDiff(tc.node)
		if keys(add) != tc.add || keys(remove) != tc.remove {
			t.Errorf("%s: add %q remove %q; want add %q remove %q", tc.name, keys(add), keys(remove), tc.add, tc.remove)
		}
	}
}

func TestWantedNoExecute(t *testing.T) {
	for _, tc := range []struct {
		ready          corev1.ConditionStatus
		want, opposite string
	}{
		{corev1.ConditionTrue, "", ""},
		{corev1.ConditionFalse, corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable},
		{corev1.ConditionUnknown, corev1.TaintNodeUnreachable, corev1.TaintNodeNotReady},
	} {
		w, o := wantedNoExecute(&corev1.NodeCondition{Type: corev1.NodeReady, Status: tc.ready})
		got := [2]string{}
		if w != nil {
			got = [2]string{w.Key, o.Key}
		}
		if got != [2]string{tc.want, tc.opposite} {
			t.Errorf("Ready=%s: want %v, got %v", tc.ready, [2]string{tc.want, tc.opposite}, got)
		}
	}
	if w, _ := wantedNoExecute(nil); w != nil {
		t.Error("a node without Ready wants a NoExecute taint")
	}
}

func TestSwapTaints(t *testing.T) {
	now := metav1.NewTime(t0)
	earlier := metav1.NewTime(t0.Add(-time.Hour))
	existing := []corev1.Taint{
		{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute, TimeAdded: &earlier},
	}
	got, changed := swapTaints(existing, []corev1.Taint{unreachableNoExecute}, []corev1.Taint{notReadyNoExecute}, now)
	if !changed || keys(got) != "dedicated:NoSchedule,node.kubernetes.io/unreachable:NoExecute" {
		t.Fatalf("swap: %v %v", keys(got), changed)
	}
	if tt := got[1].TimeAdded; tt == nil || !tt.Equal(&now) {
		t.Errorf("new NoExecute taint's timeAdded %v, want now", tt)
	}
	if existing[1].Key != corev1.TaintNodeNotReady {
		t.Error("swapTaints modified its input")
	}
	again, changed := swapTaints(got, []corev1.Taint{unreachableNoExecute}, nil, metav1.NewTime(t0.Add(time.Minute)))
	if changed || !again[1].TimeAdded.Equal(&now) {
		t.Errorf("re-adding a present taint changed it: %v %v", again, changed)
	}
}
