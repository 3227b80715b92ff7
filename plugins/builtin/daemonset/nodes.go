package daemonset

import (
	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// autoTolerations are the tolerations every daemon pod gets, as upstream:
// a daemon keeps running on a node that is not ready or unreachable, and is
// placed on nodes under resource pressure or cordoned.
func autoTolerations(hostNetwork bool) []v1.Toleration {
	ts := []v1.Toleration{
		{Key: v1.TaintNodeNotReady, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute},
		{Key: v1.TaintNodeUnreachable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute},
		{Key: v1.TaintNodeDiskPressure, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodeMemoryPressure, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodePIDPressure, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodeUnschedulable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule},
	}
	if hostNetwork {
		ts = append(ts, v1.Toleration{Key: v1.TaintNodeNetworkUnavailable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule})
	}
	return ts
}

// podTolerations is the template's tolerations plus the automatic ones it
// lacks.
func podTolerations(spec *v1.PodSpec) []v1.Toleration {
	out := append([]v1.Toleration{}, spec.Tolerations...)
	for _, a := range autoTolerations(spec.HostNetwork) {
		found := false
		for _, t := range spec.Tolerations {
			if t.Key == a.Key && t.Effect == a.Effect && t.Operator == a.Operator && t.Value == a.Value {
				found = true
				break
			}
		}
		if !found {
			out = append(out, a)
		}
	}
	return out
}

// shouldRun reports whether a daemon pod should be placed on node (its
// selector and required affinity match, every NoSchedule and NoExecute
// taint is tolerated) and whether one already there may stay (only
// NoExecute taints evict).
func shouldRun(ds *appsv1.DaemonSet, node *v1.Node) (run, stay bool) {
	if ds.DeletionTimestamp != nil {
		return false, false
	}
	tmpl := &ds.Spec.Template.Spec
	if tmpl.NodeName != "" && tmpl.NodeName != node.Name {
		return false, false
	}
	probe := &v1.Pod{Spec: v1.PodSpec{NodeSelector: tmpl.NodeSelector, Affinity: tmpl.Affinity}}
	if ok, _ := nodeaffinity.GetRequiredNodeAffinity(probe).Match(node); !ok {
		return false, false
	}
	tols := podTolerations(tmpl)
	run, stay = true, true
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect != v1.TaintEffectNoSchedule && t.Effect != v1.TaintEffectNoExecute {
			continue
		}
		if tolerated(tols, t) {
			continue
		}
		run = false
		if t.Effect == v1.TaintEffectNoExecute {
			stay = false
		}
	}
	return run, stay
}

func tolerated(tols []v1.Toleration, t *v1.Taint) bool {
	for i := range tols {
		if tols[i].ToleratesTaint(logr.Discard(), t, false) {
			return true
		}
	}
	return false
}

// targetNode is the node a daemon pod is for: its spec.nodeName once bound,
// before that the node its required affinity names through matchFields.
func targetNode(p *v1.Pod) string {
	if p.Spec.NodeName != "" {
		return p.Spec.NodeName
	}
	a := p.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, f := range term.MatchFields {
			if f.Key == metav1.ObjectNameField && f.Operator == v1.NodeSelectorOpIn && len(f.Values) == 1 {
				return f.Values[0]
			}
		}
	}
	return ""
}

// nodeAffinity pins a pod to node through the scheduler: the required
// terms become a single term matching the node's name (the controller has
// already checked the template's own terms against it).
func nodeAffinity(a *v1.Affinity, node string) *v1.Affinity {
	out := &v1.Affinity{}
	if a != nil {
		out = a.DeepCopy()
	}
	if out.NodeAffinity == nil {
		out.NodeAffinity = &v1.NodeAffinity{}
	}
	out.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &v1.NodeSelector{
		NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchFields: []v1.NodeSelectorRequirement{
			{Key: metav1.ObjectNameField, Operator: v1.NodeSelectorOpIn, Values: []string{node}},
		}}},
	}
	return out
}
