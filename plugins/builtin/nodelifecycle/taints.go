package nodelifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/plugins/sdk/nodehealth"
)

// The NoExecute taints of a node whose Ready is False or Unknown; they are
// mutually exclusive, mirroring the condition.
var (
	notReadyNoExecute    = corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute}
	unreachableNoExecute = corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}
)

// conditionTaints says which condition status carries which NoSchedule
// taint, as upstream's node lifecycle controller does.
var conditionTaints = map[corev1.NodeConditionType]map[corev1.ConditionStatus]string{
	corev1.NodeReady:              {corev1.ConditionFalse: corev1.TaintNodeNotReady, corev1.ConditionUnknown: corev1.TaintNodeUnreachable},
	corev1.NodeMemoryPressure:     {corev1.ConditionTrue: corev1.TaintNodeMemoryPressure},
	corev1.NodeDiskPressure:       {corev1.ConditionTrue: corev1.TaintNodeDiskPressure},
	corev1.NodeNetworkUnavailable: {corev1.ConditionTrue: corev1.TaintNodeNetworkUnavailable},
	corev1.NodePIDPressure:        {corev1.ConditionTrue: corev1.TaintNodePIDPressure},
}

// controllerNoSchedule reports whether t is a NoSchedule taint this
// controller manages (a condition's, or the unschedulable one).
func controllerNoSchedule(t corev1.Taint) bool {
	if t.Effect != corev1.TaintEffectNoSchedule {
		return false
	}
	if t.Key == corev1.TaintNodeUnschedulable {
		return true
	}
	for _, byStatus := range conditionTaints {
		for _, key := range byStatus {
			if key == t.Key {
				return true
			}
		}
	}
	return false
}

// noScheduleDiff compares the NoSchedule taints the Node's conditions and
// spec.unschedulable call for with the ones it has.
func noScheduleDiff(n *corev1.Node) (add, remove []corev1.Taint) {
	var want []corev1.Taint
	for _, c := range n.Status.Conditions {
		if key, ok := conditionTaints[c.Type][c.Status]; ok {
			want = append(want, corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule})
		}
	}
	if n.Spec.Unschedulable {
		want = append(want, corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule})
	}
	for _, w := range want {
		if !hasTaint(n.Spec.Taints, w) {
			add = append(add, w)
		}
	}
	for _, t := range n.Spec.Taints {
		if controllerNoSchedule(t) && !hasTaint(want, t) {
			remove = append(remove, t)
		}
	}
	return add, remove
}

// wantedNoExecute is the NoExecute taint a node with this Ready condition
// must carry (nil: none) and the one it must not.
func wantedNoExecute(ready *corev1.NodeCondition) (want, opposite *corev1.Taint) {
	if ready == nil {
		return nil, nil
	}
	switch ready.Status {
	case corev1.ConditionFalse:
		return &notReadyNoExecute, &unreachableNoExecute
	case corev1.ConditionUnknown:
		return &unreachableNoExecute, &notReadyNoExecute
	}
	return nil, nil
}

// needsNoExecute reports whether the node waits for its NoExecute taint.
func needsNoExecute(n *corev1.Node) bool {
	want, _ := wantedNoExecute(nodehealth.Condition(n, corev1.NodeReady))
	return want != nil && !hasTaint(n.Spec.Taints, *want)
}

// hasTaint matches by key and effect, as taints are identified.
func hasTaint(taints []corev1.Taint, t corev1.Taint) bool {
	return slices.ContainsFunc(taints, func(x corev1.Taint) bool { return x.Key == t.Key && x.Effect == t.Effect })
}

// swapTaints returns taints with add added (NoExecute ones stamped with
// now, from which tolerationSeconds count) and remove removed, and whether
// that changed anything. A taint already there keeps its time.
func swapTaints(taints []corev1.Taint, add, remove []corev1.Taint, now metav1.Time) ([]corev1.Taint, bool) {
	out := slices.DeleteFunc(slices.Clone(taints), func(t corev1.Taint) bool { return hasTaint(remove, t) })
	changed := len(out) != len(taints)
	for _, a := range add {
		if hasTaint(out, a) {
			continue
		}
		if a.Effect == corev1.TaintEffectNoExecute {
			a.TimeAdded = &now
		}
		out = append(out, a)
		changed = true
	}
	return out, changed
}

// patchTaints writes the Node's whole taint list, on the condition that the
// Node is still the version it was computed from (a concurrent change,
// by an operator or another controller, is never overwritten).
func patchTaints(ctx context.Context, client kubernetes.Interface, n *corev1.Node, taints []corev1.Taint) error {
	body := map[string]any{
		"metadata": map[string]any{"resourceVersion": n.ResourceVersion},
		"spec":     map[string]any{"taints": taints},
	}
	patch, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encoding taints of node %s: %w", n.Name, err)
	}
	if _, err := client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("setting taints of node %s: %w", n.Name, err)
	}
	return nil
}
