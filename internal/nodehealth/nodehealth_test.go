package nodehealth

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func TestMarkUnknownAsUpstream(t *testing.T) {
	now := metav1.NewTime(t0)
	created := metav1.NewTime(t0.Add(-time.Hour))
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", CreationTimestamp: created}}
	n.Status.Conditions = []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"},
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
		{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse},
	}
	if !MarkUnknown(n, now) {
		t.Fatal("MarkUnknown changed nothing")
	}
	want := map[corev1.NodeConditionType]string{
		corev1.NodeReady:              "Unknown/NodeStatusUnknown/Kubelet stopped posting node status.",
		corev1.NodeMemoryPressure:     "Unknown/NodeStatusUnknown/Kubelet stopped posting node status.",
		corev1.NodeDiskPressure:       "Unknown/NodeStatusNeverUpdated/Kubelet never posted node status.",
		corev1.NodePIDPressure:        "Unknown/NodeStatusNeverUpdated/Kubelet never posted node status.",
		corev1.NodeNetworkUnavailable: "False//",
	}
	for _, c := range n.Status.Conditions {
		if got := fmt.Sprintf("%s/%s/%s", c.Status, c.Reason, c.Message); got != want[c.Type] {
			t.Errorf("%s = %s, want %s", c.Type, got, want[c.Type])
		}
		if c.Type != corev1.NodeNetworkUnavailable && !c.LastTransitionTime.Equal(&now) {
			t.Errorf("%s transition time %v, want %v", c.Type, c.LastTransitionTime, now)
		}
	}
	if c := Condition(n, corev1.NodeDiskPressure); !c.LastHeartbeatTime.Equal(&created) {
		t.Errorf("a never-posted condition's heartbeat is %v, want the node's creation", c.LastHeartbeatTime)
	}
	if len(n.Status.Conditions) != 5 {
		t.Errorf("got %d conditions, want 5", len(n.Status.Conditions))
	}
	if MarkUnknown(n, metav1.NewTime(t0.Add(time.Minute))) {
		t.Error("a second MarkUnknown changed the node again")
	}
	if !AllUnknown(n) || !UnknownByController(n) {
		t.Error("AllUnknown or UnknownByController is false after MarkUnknown")
	}
}

func TestIsGossip(t *testing.T) {
	n := &corev1.Node{}
	if IsGossip(n) {
		t.Error("a Node without the annotation is gossip-managed")
	}
	n.Annotations = map[string]string{LivenessAnnotation: LivenessGossip}
	if !IsGossip(n) {
		t.Error("an annotated Node is not gossip-managed")
	}
}
