package node

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// An extended resource advertised by a PATCH of the Node's capacity
// survives the agent's status write, allocatable equal to capacity; the
// agent's own resources stay the agent's measurements.
func TestExtendedResourcesKept(t *testing.T) {
	st := v1.NodeStatus{
		Capacity:    v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")},
		Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1900m")},
	}
	cur := &v1.Node{Status: v1.NodeStatus{Capacity: v1.ResourceList{
		v1.ResourceCPU:           resource.MustParse("64"),
		"example.com/dongle":     resource.MustParse("5"),
		"kubernetes.io/foo":      resource.MustParse("1"),
		"requests.example.com/x": resource.MustParse("1"),
	}}}
	keepExtendedResources(&st, cur)
	if q := st.Capacity["example.com/dongle"]; q.Cmp(resource.MustParse("5")) != 0 {
		t.Errorf("capacity of the extended resource = %v, want 5", q.String())
	}
	if q := st.Allocatable["example.com/dongle"]; q.Cmp(resource.MustParse("5")) != 0 {
		t.Errorf("allocatable of the extended resource = %v, want 5", q.String())
	}
	if q := st.Capacity[v1.ResourceCPU]; q.Cmp(resource.MustParse("2")) != 0 {
		t.Errorf("cpu capacity = %v, want the agent's 2", q.String())
	}
	for _, name := range []v1.ResourceName{"kubernetes.io/foo", "requests.example.com/x"} {
		if _, ok := st.Capacity[name]; ok {
			t.Errorf("%s is not an extended resource but was kept", name)
		}
	}
}
