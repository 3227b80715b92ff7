package proxy

import (
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// The tracker hands over only the services changed since the last take,
// as they are now: a slice moving to another service changes both, a
// deleted service (or a tombstone of one) leaves no ports, and a view
// updated from the changes equals a whole snapshot.
func TestChangeTrackerHandsOverChangedServices(t *testing.T) {
	tr := newChangeTracker()
	triggers := 0
	h := tr.handler(func() { triggers++ })
	a, b := svc("default", "a", "10.96.0.1"), svc("default", "b", "10.96.0.2")
	sa := slice("default", "a", "a-1", 8080, readyEP("10.42.0.1", "n1"))
	h.OnAdd(a, true)
	h.OnAdd(b, true)
	h.OnAdd(sa, true)
	v := &portView{bySvc: map[string][]ServicePort{}}
	v.update(tr.take(), "n1", v1.IPv4Protocol)
	if !slices.Equal(v.changed, []string{"default/a", "default/b"}) || triggers != 3 {
		t.Fatalf("first take changed %v after %d triggers, want both services after 3", v.changed, triggers)
	}
	want, _ := Snapshot([]*v1.Service{a, b}, []*discovery.EndpointSlice{sa}, "n1", v1.IPv4Protocol)
	if got := v.all(); len(got) != 2 || !got[0].equal(&want[0]) || !got[1].equal(&want[1]) {
		t.Fatalf("view %+v, want the snapshot %+v", got, want)
	}
	if v.update(tr.take(), "n1", v1.IPv4Protocol); len(v.changed) != 0 {
		t.Errorf("nothing happened, yet %v changed", v.changed)
	}

	moved := sa.DeepCopy()
	moved.Labels[discovery.LabelServiceName] = "b"
	h.OnUpdate(sa, moved)
	v.update(tr.take(), "n1", v1.IPv4Protocol)
	if !slices.Equal(v.changed, []string{"default/a", "default/b"}) {
		t.Errorf("a slice moving from a to b changed %v, want both", v.changed)
	}
	if eps := v.bySvc["default/a"][0].Endpoints; len(eps) != 0 {
		t.Errorf("a kept the moved slice's endpoints %v", eps)
	}
	if eps := v.bySvc["default/b"][0].Endpoints; len(eps) != 1 {
		t.Errorf("b has endpoints %v, want the moved slice's one", eps)
	}

	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "default/b", Obj: b})
	h.OnDelete(moved)
	v.update(tr.take(), "n1", v1.IPv4Protocol)
	if _, ok := v.bySvc["default/b"]; ok || !slices.Equal(v.changed, []string{"default/b"}) {
		t.Errorf("b deleted through a tombstone: view %v, changed %v", v.bySvc, v.changed)
	}
}
