package podfixture

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Field is one thing a controller reads of a cached pod.
type Field struct {
	Name string
	Get  func(*corev1.Pod) any
}

// Keeps fails t for every field whose value differs between in and what
// transform made of it: a transform must keep what its controller reads.
func Keeps(t *testing.T, transform func(any) (any, error), in *corev1.Pod, fields ...Field) {
	t.Helper()
	want := in.DeepCopy()
	obj, err := transform(in)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := obj.(*corev1.Pod)
	if !ok {
		t.Fatalf("transform returned %T, want a pod", obj)
	}
	for _, f := range fields {
		if w, g := f.Get(want), f.Get(got); !reflect.DeepEqual(w, g) {
			t.Errorf("%s: %#v after the transform, want %#v", f.Name, g, w)
		}
	}
}

// Owned are the fields every pod-owning controller reads: identity,
// labels, owner references, creation and deletion times, node and phase.
var Owned = []Field{
	{"name", func(p *corev1.Pod) any { return p.Name }},
	{"namespace", func(p *corev1.Pod) any { return p.Namespace }},
	{"uid", func(p *corev1.Pod) any { return p.UID }},
	{"resourceVersion", func(p *corev1.Pod) any { return p.ResourceVersion }},
	{"labels", func(p *corev1.Pod) any { return p.Labels }},
	{"ownerReferences", func(p *corev1.Pod) any { return p.OwnerReferences }},
	{"creationTimestamp", func(p *corev1.Pod) any { return p.CreationTimestamp }},
	{"deletionTimestamp", func(p *corev1.Pod) any { return p.DeletionTimestamp }},
	{"nodeName", func(p *corev1.Pod) any { return p.Spec.NodeName }},
	{"phase", func(p *corev1.Pod) any { return p.Status.Phase }},
	{"Ready condition", func(p *corev1.Pod) any { return ReadyCondition(p) }},
}

// ReadyCondition is the pod's Ready condition's type, status and last
// transition time (nil without one).
func ReadyCondition(p *corev1.Pod) *corev1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return &corev1.PodCondition{Type: c.Type, Status: c.Status, LastTransitionTime: c.LastTransitionTime}
		}
	}
	return nil
}
