package node

import (
	"net"
	"reflect"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func cond(conds []v1.NodeCondition, t v1.NodeConditionType) v1.NodeCondition {
	for _, c := range conds {
		if c.Type == t {
			return c
		}
	}
	return v1.NodeCondition{}
}

func TestConditionsFromMeasurements(t *testing.T) {
	th, err := parseThresholds(map[string]string{"memory.available": "100Mi", "nodefs.available": "10%", "pid.available": "5%"})
	if err != nil {
		t.Fatal(err)
	}
	healthy := measurements{memAvailable: 8 << 30, memCapacity: 16 << 30, fsAvailable: 50 << 30, fsCapacity: 100 << 30, pidMax: 32768, pidUsed: 300}
	t0 := metav1.NewTime(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	conds := conditions(healthy, true, th, true, true, nil, t0)
	want := []struct {
		t      v1.NodeConditionType
		status v1.ConditionStatus
		reason string
	}{
		{v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory"},
		{v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure"},
		{v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID"},
		{v1.NodeReady, v1.ConditionTrue, "KubeletReady"},
	}
	for i, w := range want {
		if c := conds[i]; c.Type != w.t || c.Status != w.status || c.Reason != w.reason {
			t.Errorf("condition %d: %+v, want %s %s %s", i, c, w.t, w.status, w.reason)
		}
	}
	// Memory runs low, the disk fills, PIDs run out: each pressure flips,
	// with a new transition time; Ready keeps its own.
	t1 := metav1.NewTime(t0.Add(time.Minute))
	pressed := measurements{memAvailable: 50 << 20, memCapacity: 16 << 30, fsAvailable: 5 << 30, fsCapacity: 100 << 30, pidMax: 32768, pidUsed: 32000}
	conds2 := conditions(pressed, true, th, true, true, conds, t1)
	for _, typ := range []v1.NodeConditionType{v1.NodeMemoryPressure, v1.NodeDiskPressure, v1.NodePIDPressure} {
		if c := cond(conds2, typ); c.Status != v1.ConditionTrue || !c.LastTransitionTime.Equal(&t1) {
			t.Errorf("%s under pressure: %+v", typ, c)
		}
	}
	if c := cond(conds2, v1.NodeReady); !c.LastTransitionTime.Equal(&t0) || !c.LastHeartbeatTime.Equal(&t1) {
		t.Errorf("Ready transition time moved: %+v", c)
	}
	// No pod CIDR yet: not ready, saying why.
	if c := cond(conditions(healthy, true, th, true, false, nil, t0), v1.NodeReady); c.Status != v1.ConditionFalse || c.Reason != "KubeletNotReady" {
		t.Errorf("Ready without a pod network: %+v", c)
	}
	// Without measurements the pressure conditions stay as they were.
	if c := cond(conditions(measurements{}, false, th, true, true, conds2, t1), v1.NodeMemoryPressure); c.Status != v1.ConditionTrue {
		t.Errorf("unmeasured memory pressure changed: %+v", c)
	}
}

func TestAllocatable(t *testing.T) {
	capacity := v1.ResourceList{
		v1.ResourceCPU:              resource.MustParse("4"),
		v1.ResourceMemory:           resource.MustParse("8Gi"),
		v1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
		v1.ResourcePods:             resource.MustParse("110"),
	}
	th, _ := parseThresholds(map[string]string{"memory.available": "100Mi", "nodefs.available": "10%"})
	alloc, err := allocatable(capacity, map[string]string{"cpu": "500m", "memory": "1Gi"}, th)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[v1.ResourceName]string{v1.ResourceCPU: "3500m", v1.ResourceMemory: "7068Mi", v1.ResourceEphemeralStorage: "90Gi", v1.ResourcePods: "110"} {
		got := alloc[name]
		if got.Cmp(resource.MustParse(want)) != 0 {
			t.Errorf("allocatable %s = %s, want %s", name, got.String(), want)
		}
	}
}

func TestAddresses(t *testing.T) {
	base := Options{Name: "n1", IP: net.ParseIP("10.0.0.5"), ExternalIPs: []net.IP{net.ParseIP("203.0.113.5")}}
	want := []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.5"}, {Type: v1.NodeExternalIP, Address: "203.0.113.5"}, {Type: v1.NodeHostName, Address: "n1"}}
	cloudSet := &v1.Node{Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.5"}, {Type: v1.NodeExternalIP, Address: "198.51.100.7"}}}}
	if got := (&Node{opts: base}).addresses(cloudSet); !reflect.DeepEqual(got, want) {
		t.Errorf("without a cloud provider: %v, want the node's own %v", got, want)
	}
	keep := base
	keep.KeepAddresses = true
	if got := (&Node{opts: keep}).addresses(nil); !reflect.DeepEqual(got, want) {
		t.Errorf("external, not yet initialised: %v, want the node's own %v", got, want)
	}
	if got := (&Node{opts: keep}).addresses(cloudSet); !reflect.DeepEqual(got, cloudSet.Status.Addresses) {
		t.Errorf("external, initialised: %v, want the cloud's %v", got, cloudSet.Status.Addresses)
	}
}

func TestObjectTTLFromTheAnnotation(t *testing.T) {
	n := &Node{opts: Options{Name: "n1"}}
	if got := n.ObjectTTL(); got != 0 {
		t.Errorf("before the node is seen: %s, want 0", got)
	}
	for _, tc := range []struct {
		value string
		want  time.Duration
	}{{"15", 15 * time.Second}, {"0", 0}, {"-3", 0}, {"soon", 0}, {"", 0}} {
		n.Observe(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: tc.value + "x",
			Annotations: map[string]string{TTLAnnotation: tc.value}}})
		if got := n.ObjectTTL(); got != tc.want {
			t.Errorf("annotation %q: %s, want %s", tc.value, got, tc.want)
		}
	}
}
