package placement

import (
	"fmt"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

// noLog is handed to the toleration helpers, which log only for the alpha
// comparison operators that stay off (as upstream's default).
var noLog = logr.Discard()

// filterNodeName: a pod that names its node fits only there.
func (c *cycle) filterNodeName(n *cluster.NodeInfo) Status {
	if name := c.pod.Spec.NodeName; name != "" && name != n.Name {
		return rejectHard(FilterNodeName, reasonNodeName)
	}
	return Status{}
}

// filterUnschedulable: a cordoned node takes only pods that tolerate the
// node.kubernetes.io/unschedulable:NoSchedule taint.
func (c *cycle) filterUnschedulable(n *cluster.NodeInfo) Status {
	if !n.Unschedulable {
		return Status{}
	}
	taint := v1.Taint{Key: v1.TaintNodeUnschedulable, Effect: v1.TaintEffectNoSchedule}
	if corev1helpers.TolerationsTolerateTaint(noLog, c.pod.Spec.Tolerations, &taint, false) {
		return Status{}
	}
	return rejectHard(FilterNodeUnschedulable, reasonUnschedulable)
}

// filterTaints: every NoSchedule and NoExecute taint of the node, including
// those implied by its conditions (not Ready, unreachable, pressure), must
// be tolerated.
func (c *cycle) filterTaints(n *cluster.NodeInfo) Status {
	for i := range n.Taints {
		t := &n.Taints[i]
		if t.Effect != v1.TaintEffectNoSchedule && t.Effect != v1.TaintEffectNoExecute {
			continue
		}
		if !corev1helpers.TolerationsTolerateTaint(noLog, c.pod.Spec.Tolerations, t, false) {
			return rejectHard(FilterTaintToleration, reasonUntoleratedTaint)
		}
	}
	return Status{}
}

// preFilterNodeAffinity parses the node selector and required node
// affinity, and narrows the nodes to those named by matchFields on
// metadata.name when every term names some.
func (c *cycle) preFilterNodeAffinity(restrict func(FilterID, sets.Set[string])) Status {
	a := c.pod.Spec.Affinity
	hasRequired := a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil
	if !hasRequired && c.pod.Spec.NodeSelector == nil {
		return Status{}
	}
	req := nodeaffinity.GetRequiredNodeAffinity(c.pod)
	c.nodeAffinity = &req
	if !hasRequired {
		return Status{}
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		return Status{}
	}
	var names sets.Set[string]
	for _, t := range terms {
		var termNames sets.Set[string]
		for _, r := range t.MatchFields {
			if r.Key != metav1.ObjectNameField || r.Operator != v1.NodeSelectorOpIn {
				continue
			}
			if termNames == nil {
				termNames = sets.New(r.Values...)
			} else {
				termNames = termNames.Intersection(sets.New(r.Values...))
			}
		}
		if termNames == nil {
			return Status{} // a term not naming nodes can match any node
		}
		names = names.Union(termNames)
	}
	if names.Len() == 0 {
		return rejectHard(FilterNodeAffinity, reasonAffinityConflict)
	}
	restrict(FilterNodeAffinity, names)
	return Status{}
}

// filterNodeAffinity: the node's labels and fields match the pod's
// nodeSelector and one of its required node selector terms.
func (c *cycle) filterNodeAffinity(n *cluster.NodeInfo) Status {
	if c.nodeAffinity == nil {
		return Status{}
	}
	if ok, _ := c.nodeAffinity.Match(n.Node); !ok {
		return rejectHard(FilterNodeAffinity, reasonNodeAffinity)
	}
	return Status{}
}

// filterPorts: the pod's host ports are free on the node.
func (c *cycle) filterPorts(n *cluster.NodeInfo) Status {
	for _, p := range c.pi.HostPorts {
		if n.UsedPorts.Conflicts(p.HostIP, string(p.Protocol), p.HostPort) {
			return reject(FilterNodePorts, reasonNodePorts)
		}
	}
	return Status{}
}

// filterResources: the pod's requests fit in what the node's pods leave of
// its allocatable, and the node admits one more pod. Every shortage is
// reported; the verdict is unresolvable when the pod asks for more than the
// node has at all, since no preemption can help then.
func (c *cycle) filterResources(n *cluster.NodeInfo) Status {
	return fitsResources(&c.pi.Requests, n)
}

func fitsResources(req *cluster.Resources, n *cluster.NodeInfo) Status {
	var reasons []string
	code := Unschedulable
	short := func(reason string, want, capacity int64) {
		reasons = append(reasons, reason)
		if want > capacity {
			code = UnschedulableAndUnresolvable
		}
	}
	alloc, used := &n.Allocatable, &n.Requested
	if int64(len(n.Pods))+1 > alloc.Pods {
		reasons = append(reasons, reasonTooManyPods)
	}
	if req.MilliCPU > 0 && req.MilliCPU > alloc.MilliCPU-used.MilliCPU {
		short("Insufficient cpu", req.MilliCPU, alloc.MilliCPU)
	}
	if req.Memory > 0 && req.Memory > alloc.Memory-used.Memory {
		short("Insufficient memory", req.Memory, alloc.Memory)
	}
	if req.EphemeralStorage > 0 && req.EphemeralStorage > alloc.EphemeralStorage-used.EphemeralStorage {
		short("Insufficient ephemeral-storage", req.EphemeralStorage, alloc.EphemeralStorage)
	}
	for name, want := range req.Scalar {
		if want > 0 && want > alloc.Scalar[name]-used.Scalar[name] {
			short(fmt.Sprintf("Insufficient %s", name), want, alloc.Scalar[name])
		}
	}
	if len(reasons) == 0 {
		return Status{}
	}
	return Status{Code: code, Filter: FilterNodeResourcesFit, Reasons: reasons}
}
