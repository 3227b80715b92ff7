package cluster

import (
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
)

// Requests that count for a container that asks for nothing when nodes are
// scored (not when they are filtered): without them, best-effort pods would
// all pile onto one node. The values are upstream's (0.1 core, 200 MiB).
const (
	DefaultMilliCPURequest int64 = 100
	DefaultMemoryRequest   int64 = 200 * 1024 * 1024
)

// Resources is an amount of each resource the scheduler accounts for.
type Resources struct {
	MilliCPU         int64
	Memory           int64
	EphemeralStorage int64
	// Pods is the number of pods a node admits (allocatable only).
	Pods int64
	// Scalar holds extended resources, hugepages and other prefixed
	// resources; nil when there are none.
	Scalar map[v1.ResourceName]int64
}

// ResourcesFromList converts an API resource list.
func ResourcesFromList(rl v1.ResourceList) Resources {
	var r Resources
	for name, q := range rl {
		switch name {
		case v1.ResourceCPU:
			r.MilliCPU = q.MilliValue()
		case v1.ResourceMemory:
			r.Memory = q.Value()
		case v1.ResourceEphemeralStorage:
			r.EphemeralStorage = q.Value()
		case v1.ResourcePods:
			r.Pods = q.Value()
		default:
			if IsScalarResource(name) {
				if r.Scalar == nil {
					r.Scalar = map[v1.ResourceName]int64{}
				}
				r.Scalar[name] = q.Value()
			}
		}
	}
	return r
}

// add adds sign*o to r (sign is 1 or -1).
func (r *Resources) add(o *Resources, sign int64) {
	r.MilliCPU += sign * o.MilliCPU
	r.Memory += sign * o.Memory
	r.EphemeralStorage += sign * o.EphemeralStorage
	if len(o.Scalar) > 0 && r.Scalar == nil {
		r.Scalar = make(map[v1.ResourceName]int64, len(o.Scalar))
	}
	for name, v := range o.Scalar {
		r.Scalar[name] += sign * v
	}
}

// Clone returns a deep copy.
func (r Resources) Clone() Resources {
	c := r
	if r.Scalar != nil {
		c.Scalar = make(map[v1.ResourceName]int64, len(r.Scalar))
		for k, v := range r.Scalar {
			c.Scalar[k] = v
		}
	}
	return c
}

// IsZero reports whether r asks for none of cpu, memory, ephemeral storage
// or scalar resources.
func (r *Resources) IsZero() bool {
	if r.MilliCPU != 0 || r.Memory != 0 || r.EphemeralStorage != 0 {
		return false
	}
	for _, v := range r.Scalar {
		if v != 0 {
			return false
		}
	}
	return true
}

// IsScalarResource reports whether name is accounted in Resources.Scalar:
// extended resources (a domain-prefixed name outside kubernetes.io),
// hugepages, kubernetes.io-prefixed native resources and attachable volume
// counts.
func IsScalarResource(name v1.ResourceName) bool {
	s := string(name)
	switch {
	case strings.HasPrefix(s, v1.ResourceHugePagesPrefix):
		return true
	case strings.HasPrefix(s, v1.ResourceAttachableVolumesPrefix):
		return true
	case strings.HasPrefix(s, v1.ResourceDefaultNamespacePrefix):
		return true
	}
	return IsExtendedResource(name)
}

// IsExtendedResource reports whether name is an extended resource: it has a
// domain prefix outside kubernetes.io and is not a quota name ("requests.").
func IsExtendedResource(name v1.ResourceName) bool {
	s := string(name)
	if !strings.Contains(s, "/") || strings.Contains(s, v1.ResourceDefaultNamespacePrefix) {
		return false
	}
	return !strings.HasPrefix(s, v1.DefaultResourceRequestsPrefix)
}

// podRequests computes what a pod asks of its node, the way the kubelet
// admits it: init containers and sidecars, pod-level resources, overhead,
// and for a running pod the resources its status says were allocated
// (in-place resize).
func podRequests(pod *v1.Pod) (req Resources, nonZeroCPU, nonZeroMem int64) {
	opts := resourcehelper.PodResourcesOptions{UseStatusResources: true}
	reqs := resourcehelper.PodRequests(pod, opts)
	req = ResourcesFromList(reqs)
	req.Pods = 0

	podLevel := resourcehelper.IsPodLevelRequestsSet(pod)
	nonMissing := v1.ResourceList{}
	if _, ok := reqs[v1.ResourceCPU]; !ok || !podLevel {
		nonMissing[v1.ResourceCPU] = *resource.NewMilliQuantity(DefaultMilliCPURequest, resource.DecimalSI)
	}
	if _, ok := reqs[v1.ResourceMemory]; !ok || !podLevel {
		nonMissing[v1.ResourceMemory] = *resource.NewQuantity(DefaultMemoryRequest, resource.BinarySI)
	}
	opts.NonMissingContainerRequests = nonMissing
	nz := resourcehelper.PodRequests(pod, opts)
	cpu, mem := nz[v1.ResourceCPU], nz[v1.ResourceMemory]
	return req, cpu.MilliValue(), mem.Value()
}
