package sliceset

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

func slice(uid string, gen int64) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), Generation: gen}}
}

func TestTracker(t *testing.T) {
	tr := NewTracker()
	const svc = "ns/web"
	if tr.Stale(svc, nil) {
		t.Error("nothing written, yet stale")
	}
	tr.Wrote(svc, slice("a", 2))
	for _, tc := range []struct {
		name   string
		cached []*discoveryv1.EndpointSlice
		stale  bool
	}{
		{"created slice not cached yet", nil, true},
		{"older generation cached", []*discoveryv1.EndpointSlice{slice("a", 1)}, true},
		{"caught up", []*discoveryv1.EndpointSlice{slice("a", 2)}, false},
		{"someone wrote since", []*discoveryv1.EndpointSlice{slice("a", 3)}, false},
	} {
		if got := tr.Stale(svc, tc.cached); got != tc.stale {
			t.Errorf("%s: Stale = %v, want %v", tc.name, got, tc.stale)
		}
	}
	tr.Deleted(svc, slice("a", 2))
	if !tr.Stale(svc, []*discoveryv1.EndpointSlice{slice("a", 2)}) {
		t.Error("a deleted slice still cached is not stale")
	}
	if tr.Stale(svc, nil) {
		t.Error("deletion seen, yet stale")
	}
	// Deleted by someone else: not expected, the owner must be resynced,
	// and the tracker no longer waits for it.
	tr.Wrote(svc, slice("b", 1))
	if tr.ObserveDeletion(svc, slice("b", 1)) {
		t.Error("a deletion by someone else reported as expected")
	}
	if tr.Stale(svc, nil) {
		t.Error("tracker still waits for a slice someone else deleted")
	}
	tr.Wrote(svc, slice("c", 1))
	tr.Deleted(svc, slice("c", 1))
	if !tr.ObserveDeletion(svc, slice("c", 1)) {
		t.Error("own deletion not reported as expected")
	}
}

func TestEndpointIdentity(t *testing.T) {
	a := &discoveryv1.Endpoint{Addresses: []string{"10.0.0.2", "10.0.0.1"}, TargetRef: &corev1.ObjectReference{Namespace: "n", Name: "p", ResourceVersion: "1"},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}
	b := a.DeepCopy()
	b.Addresses = []string{"10.0.0.1", "10.0.0.2"}
	b.TargetRef.ResourceVersion = "2"
	if EndpointKey(a) != EndpointKey(b) || !SameEndpoint(a, b) {
		t.Error("address order or target resourceVersion changes an endpoint")
	}
	b.Conditions.Ready = ptr.To(false)
	if EndpointKey(a) != EndpointKey(b) {
		t.Error("a condition change must keep the endpoint's identity (updated in place)")
	}
	if SameEndpoint(a, b) {
		t.Error("a condition change is not a change")
	}
	set := Set{}
	set.Insert(&discoveryv1.Endpoint{Addresses: []string{"10.0.0.9"}})
	set.Insert(a)
	set.Insert(b) // same key: replaces a
	if got := set.PopSorted(10); len(got) != 2 || got[0].Addresses[0] != "10.0.0.1" || len(set) != 0 {
		t.Errorf("PopSorted = %v, left %d", got, len(set))
	}
	p1 := []discoveryv1.EndpointPort{{Name: ptr.To("a"), Port: ptr.To(int32(1))}, {Name: ptr.To("b"), Port: ptr.To(int32(2))}}
	p2 := []discoveryv1.EndpointPort{p1[1], p1[0]}
	if PortsKey(p1) != PortsKey(p2) {
		t.Error("port order changes the port set")
	}
}
