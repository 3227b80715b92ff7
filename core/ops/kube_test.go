package ops

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

func plugin(name string, status map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keelson.io/v1alpha1", "kind": "Plugin",
		"metadata": map[string]any{"name": name}, "status": status,
	}}
}

func TestReadKube(t *testing.T) {
	kc := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}, Status: corev1.NodeStatus{
			NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.37.2+keelson.0.1.0"},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown"}}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w2"}},
	)
	dc := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{pluginsGVR: "PluginList"},
		plugin("scheduler", map[string]any{"state": "crash-looping", "ready": false, "restarts": int64(3), "lastError": "exit status 1"}),
		plugin("lb-announcer.w1", map[string]any{"state": "running", "ready": true, "restarts": int64(0), "node": "w1"}),
	)
	got, err := ReadKube(context.Background(), kc, dc, []GossipMember{{Name: "w1", Role: "agent", Status: "failed"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Nodes) != 2 {
		t.Fatalf("nodes: %+v", got.Nodes)
	}
	w1 := got.Nodes[0]
	if w1.Name != "w1" || w1.Ready != "Unknown" || w1.Reason != "NodeStatusUnknown" || w1.Gossip != "failed" || w1.Version != "v1.37.2+keelson.0.1.0" {
		t.Errorf("w1: %+v", w1)
	}
	if w2 := got.Nodes[1]; w2.Ready != "Unknown" || w2.Gossip != "" {
		t.Errorf("a node without a Ready condition and outside the pool: %+v", w2)
	}
	want := []PluginState{
		{Name: "lb-announcer", Node: "w1", State: "running", Ready: true},
		{Name: "scheduler", State: "crash-looping", Restarts: 3, LastError: "exit status 1"},
	}
	if len(got.Plugins) != 2 || got.Plugins[0] != want[0] || got.Plugins[1] != want[1] {
		t.Errorf("plugins: %+v; want %+v", got.Plugins, want)
	}
}
