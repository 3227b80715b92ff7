package cluster

import (
	"slices"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// NodeInfo is a node with the aggregates of the pods on it, kept up to date
// as pods come and go so that filtering a node costs a few comparisons.
type NodeInfo struct {
	// Node is nil for a node that is gone while pods still name it; such a
	// NodeInfo only keeps their accounting until they go too.
	Node *v1.Node
	Name string
	// Slot is a small number unique among the cache's current nodes (a
	// gone node's slot is reused), so per-node data can live in slices
	// indexed by it; a reused slot comes with a new generation.
	Slot int

	Allocatable Resources
	Requested   Resources
	// NonZeroCPU and NonZeroMemory sum the pods' NonZero requests.
	NonZeroCPU, NonZeroMemory int64

	Pods                         []*PodInfo
	PodsWithAffinity             []*PodInfo
	PodsWithRequiredAntiAffinity []*PodInfo
	UsedPorts                    HostPorts

	// Taints are the node's taints plus those its conditions imply (see
	// conditionTaints); Unschedulable is spec.unschedulable (cordoned).
	Taints        []v1.Taint
	Unschedulable bool
	// PreferNoSchedule counts the PreferNoSchedule taints, so the scoring
	// of a pod with no tolerations needs no loop.
	PreferNoSchedule int

	// Generation changes on every change of the node or its pods; caches
	// keyed by node compare it to know what to recompute.
	Generation int64
}

func newNodeInfo(name string, slot int) *NodeInfo {
	return &NodeInfo{Name: name, Slot: slot}
}

// setNode records the node object and what the filters derive from it.
func (n *NodeInfo) setNode(node *v1.Node) {
	n.Node = node
	n.Allocatable = ResourcesFromList(node.Status.Allocatable)
	n.Unschedulable = node.Spec.Unschedulable
	n.Taints = effectiveTaints(node)
	n.PreferNoSchedule = 0
	for i := range n.Taints {
		if n.Taints[i].Effect == v1.TaintEffectPreferNoSchedule {
			n.PreferNoSchedule++
		}
	}
}

// AddPod accounts pi on the node.
func (n *NodeInfo) AddPod(pi *PodInfo) {
	n.Pods = append(n.Pods, pi)
	if pi.HasAffinity() {
		n.PodsWithAffinity = append(n.PodsWithAffinity, pi)
	}
	if len(pi.RequiredAntiAffinity) > 0 {
		n.PodsWithRequiredAntiAffinity = append(n.PodsWithRequiredAntiAffinity, pi)
	}
	n.account(pi, 1)
}

// RemovePod removes the pod with uid from the node and reports whether it
// was there.
func (n *NodeInfo) RemovePod(uid types.UID) bool {
	i := slices.IndexFunc(n.Pods, func(p *PodInfo) bool { return p.Pod.UID == uid })
	if i < 0 {
		return false
	}
	pi := n.Pods[i]
	n.Pods = removeAt(n.Pods, i)
	if j := slices.IndexFunc(n.PodsWithAffinity, func(p *PodInfo) bool { return p.Pod.UID == uid }); j >= 0 {
		n.PodsWithAffinity = removeAt(n.PodsWithAffinity, j)
	}
	if j := slices.IndexFunc(n.PodsWithRequiredAntiAffinity, func(p *PodInfo) bool { return p.Pod.UID == uid }); j >= 0 {
		n.PodsWithRequiredAntiAffinity = removeAt(n.PodsWithRequiredAntiAffinity, j)
	}
	n.account(pi, -1)
	return true
}

// removeAt deletes s[i] by moving the last element into its place: pod
// order on a node carries no meaning, and this keeps removal O(1) after the
// search.
func removeAt(s []*PodInfo, i int) []*PodInfo {
	last := len(s) - 1
	s[i] = s[last]
	s[last] = nil
	return s[:last]
}

func (n *NodeInfo) account(pi *PodInfo, sign int64) {
	n.Requested.add(&pi.Requests, sign)
	n.NonZeroCPU += sign * pi.NonZeroCPU
	n.NonZeroMemory += sign * pi.NonZeroMemory
	for _, p := range pi.HostPorts {
		if sign > 0 {
			n.UsedPorts.Add(p.HostIP, string(p.Protocol), p.HostPort)
		} else {
			n.UsedPorts.Remove(p.HostIP, string(p.Protocol), p.HostPort)
		}
	}
}

// Clone returns a copy whose pods and aggregates can be changed without
// touching n (preemption tries removing pods on a copy). The copy has
// generation 0: it is no version of the node that caches may key on.
func (n *NodeInfo) Clone() *NodeInfo {
	c := *n
	c.Generation = 0
	c.Allocatable = n.Allocatable.Clone()
	c.Requested = n.Requested.Clone()
	c.Pods = slices.Clone(n.Pods)
	c.PodsWithAffinity = slices.Clone(n.PodsWithAffinity)
	c.PodsWithRequiredAntiAffinity = slices.Clone(n.PodsWithRequiredAntiAffinity)
	c.UsedPorts = n.UsedPorts.Clone()
	return &c
}

// pressureTaints are the taints of the pressure conditions, set while the
// condition is True.
var pressureTaints = map[v1.NodeConditionType]string{
	v1.NodeMemoryPressure:     v1.TaintNodeMemoryPressure,
	v1.NodeDiskPressure:       v1.TaintNodeDiskPressure,
	v1.NodePIDPressure:        v1.TaintNodePIDPressure,
	v1.NodeNetworkUnavailable: v1.TaintNodeNetworkUnavailable,
}

// conditionTaints are the taints upstream's node lifecycle controller puts
// on a node for its conditions (TaintNodesByCondition). The scheduler
// derives them itself, so a node that is not Ready is left alone from the
// moment its status says so, whether or not a controller tainted it yet.
func conditionTaints(node *v1.Node) []v1.Taint {
	var taints []v1.Taint
	ready := v1.ConditionUnknown
	for i := range node.Status.Conditions {
		c := &node.Status.Conditions[i]
		if c.Type == v1.NodeReady {
			ready = c.Status
		} else if key, ok := pressureTaints[c.Type]; ok && c.Status == v1.ConditionTrue {
			taints = append(taints, v1.Taint{Key: key, Effect: v1.TaintEffectNoSchedule})
		}
	}
	switch ready {
	case v1.ConditionTrue:
	case v1.ConditionFalse:
		taints = append(taints, v1.Taint{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoSchedule})
	default: // Unknown, or no Ready condition reported yet
		taints = append(taints, v1.Taint{Key: v1.TaintNodeUnreachable, Effect: v1.TaintEffectNoSchedule})
	}
	return taints
}

// effectiveTaints is the node's taints plus its condition taints that it
// does not carry already.
func effectiveTaints(node *v1.Node) []v1.Taint {
	implied := conditionTaints(node)
	if len(implied) == 0 {
		return node.Spec.Taints
	}
	taints := slices.Clone(node.Spec.Taints)
	for _, t := range implied {
		if !slices.ContainsFunc(taints, func(o v1.Taint) bool { return o.Key == t.Key && o.Effect == t.Effect }) {
			taints = append(taints, t)
		}
	}
	return taints
}
