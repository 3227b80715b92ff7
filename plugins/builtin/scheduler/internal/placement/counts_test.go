package placement

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func TestMatchCountsFollowNodeChanges(t *testing.T) {
	app := withPodLabels("app", "web")
	w := world([]*v1.Node{node("a"), node("b")}, pod("w1", onNode("a"), app), pod("db", onNode("a"), withPodLabels("app", "db")))
	m := newMatchCounts()
	sel := labels.SelectorFromSet(labels.Set{"app": "web"})
	if got := m.forSelector(sel, "ns").count(w.Node("a")); got != 1 {
		t.Fatalf("count on a = %d, want 1", got)
	}
	w.SetPod(pod("w2", onNode("a"), app))
	if got := m.forSelector(sel, "ns").count(w.Node("a")); got != 2 {
		t.Fatalf("after a new pod, count on a = %d, want 2: a changed node must be recounted", got)
	}
	if got := m.forSelector(sel, "other").count(w.Node("a")); got != 0 {
		t.Fatalf("count in another namespace = %d, want 0", got)
	}
	clone := w.Node("a").Clone()
	clone.RemovePod(w.Node("a").Pods[0].Pod.UID)
	if got := m.forSelector(sel, "ns").count(clone); got != 1 {
		t.Fatalf("count on a changed copy = %d, want 1: copies must not read the cache", got)
	}
	for i := range maxCountEntries + 10 {
		m.forSelector(labels.SelectorFromSet(labels.Set{"i": string(rune('a' + i%26)), "j": string(rune('a' + i/26))}), "ns")
	}
	if m.lru.Len() != maxCountEntries || len(m.entries) != maxCountEntries {
		t.Fatalf("%d entries kept, want the bound %d", m.lru.Len(), maxCountEntries)
	}
}
