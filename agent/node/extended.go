package node

import (
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// keepExtendedResources keeps on st the extended resources others advertise
// in the Node's capacity (a PATCH of status.capacity, as the Kubernetes docs
// show for node-level extended resources), with allocatable equal to
// capacity, as kubelet does: the agent's own status write must not erase
// them, or the pods requesting them stop fitting.
func keepExtendedResources(st *v1.NodeStatus, cur *v1.Node) {
	if st.Capacity == nil {
		st.Capacity = v1.ResourceList{}
	}
	if st.Allocatable == nil {
		st.Allocatable = v1.ResourceList{}
	}
	for name, q := range cur.Status.Capacity {
		if _, ours := st.Capacity[name]; ours || !isExtendedResource(name) {
			continue
		}
		st.Capacity[name] = q.DeepCopy()
		st.Allocatable[name] = q.DeepCopy()
	}
}

// isExtendedResource: a resource name outside the kubernetes.io domains,
// domain-qualified, and valid as a quota's requests.NAME (upstream's
// IsExtendedResourceName).
func isExtendedResource(name v1.ResourceName) bool {
	n := string(name)
	if !strings.Contains(n, "/") || strings.Contains(n, "kubernetes.io/") || strings.HasPrefix(n, v1.DefaultResourceRequestsPrefix) {
		return false
	}
	return len(validation.IsQualifiedName(v1.DefaultResourceRequestsPrefix+n)) == 0
}
