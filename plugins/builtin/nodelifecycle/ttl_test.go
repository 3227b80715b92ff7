package nodelifecycle

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestTTLStepsHaveHysteresis(t *testing.T) {
	// The cluster grows to 2000 nodes and shrinks back: the TTL follows
	// upstream's steps, moving up above a step's max and down below its
	// min only.
	seconds := func(step int) int { return ttlSteps[step].seconds }
	step := 0
	for _, tc := range []struct{ nodes, want int }{
		{1, 0}, {100, 0}, {101, 15}, {95, 15}, {89, 0}, {300, 15}, {501, 30}, {460, 30}, {449, 15},
		{1001, 60}, {2001, 300}, {1800, 300}, {1799, 60}, {899, 30}, {0, 0},
	} {
		step = nextTTLStep(step, tc.nodes)
		if got := seconds(step); got != tc.want {
			t.Errorf("%d nodes: ttl %d s, want %d", tc.nodes, got, tc.want)
		}
	}
	if got := seconds(nextTTLStep(0, 5000)); got != 300 {
		t.Errorf("5000 nodes at once: ttl %d, want 300", got)
	}
}

func TestNodesGetTheTTLAnnotation(t *testing.T) {
	var objs []runtime.Object
	for i := range 101 {
		objs = append(objs, node(fmt.Sprintf("n%d", i), "z", true, corev1.ConditionTrue))
	}
	f := newFixture(t, `{}`, objs...)
	if err := f.c.sync(f.ctx, "n0"); err != nil {
		t.Fatal(err)
	}
	if got := f.node("n0").Annotations[TTLAnnotation]; got != "15" {
		t.Errorf("node of a 101-node cluster: ttl annotation %q, want 15", got)
	}
	if f.c.queue.Len() < 100 {
		t.Errorf("the step moved but only %d nodes were queued for the new TTL, want all", f.c.queue.Len())
	}
}
