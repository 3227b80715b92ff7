package nodelifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// noExecute returns the node's NoExecute taints.
func noExecute(taints []corev1.Taint) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range taints {
		if t.Effect == corev1.TaintEffectNoExecute {
			out = append(out, t)
		}
	}
	return out
}

// tolerationTime is how long a pod with these tolerations may stay on a
// node with these NoExecute taints, as upstream's taint eviction decides:
// 0 when a taint is not tolerated at all, forever (ok false) when every
// taint is tolerated without tolerationSeconds, else the smallest
// tolerationSeconds of the tolerations used (the first one matching each
// taint).
func tolerationTime(taints []corev1.Taint, tolerations []corev1.Toleration) (d time.Duration, bounded bool) {
	shortest := int64(math.MaxInt64)
	for i := range taints {
		var used *corev1.Toleration
		for j := range tolerations {
			// Comparison operators (Lt, Gt) are an alpha feature, off by default.
			if tolerations[j].ToleratesTaint(logr.Discard(), &taints[i], false) {
				used = &tolerations[j]
				break
			}
		}
		if used == nil {
			return 0, true
		}
		if s := used.TolerationSeconds; s != nil {
			if *s <= 0 {
				return 0, true
			}
			shortest = min(shortest, *s)
		}
	}
	if shortest == math.MaxInt64 {
		return 0, false
	}
	return time.Duration(shortest) * time.Second, true
}

// evictionTime is when the pod must leave the node: tolerationTime after the
// pod became subject to the node's NoExecute taints, that is after the
// earliest taint was added (since, for a taint without timeAdded, gives
// when this controller first saw it), but not before the pod existed. ok
// is false when the pod tolerates the taints forever. Counting from the
// taint's own time, not from when this process noticed it, keeps the
// deadline across a leader change.
func evictionTime(pod *corev1.Pod, taints []corev1.Taint, since func(corev1.Taint) time.Time) (at time.Time, ok bool) {
	d, bounded := tolerationTime(taints, pod.Spec.Tolerations)
	if !bounded {
		return time.Time{}, false
	}
	var start time.Time
	for _, t := range taints {
		s := since(t)
		if t.TimeAdded != nil {
			s = t.TimeAdded.Time
		}
		if start.IsZero() || s.Before(start) {
			start = s
		}
	}
	if created := pod.CreationTimestamp.Time; created.After(start) {
		start = created
	}
	return start.Add(d), true
}

// Upstream's pod condition and events of a taint eviction.
const (
	reasonDeletionByTaintManager  = "DeletionByTaintManager"
	messageDeletionByTaintManager = "Taint manager: deleting due to NoExecute taint"
)

// evict marks the pod as a disruption target, as upstream does, then
// deletes it (gracefully: the agent, if it can still be reached, stops the
// containers). Both are conditional on the pod's UID, so a new pod of the
// same name is never touched.
func evict(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, now metav1.Time) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": pod.UID},
		"status": map[string]any{"conditions": []corev1.PodCondition{{
			Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, LastTransitionTime: now,
			Reason: reasonDeletionByTaintManager, Message: messageDeletionByTaintManager,
		}}},
	})
	if err != nil {
		return fmt.Errorf("encoding the disruption condition of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if !hasCondition(pod, corev1.DisruptionTarget, corev1.ConditionTrue) {
		_, err = client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("marking pod %s/%s a disruption target: %w", pod.Namespace, pod.Name, err)
		}
	}
	err = client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

func hasCondition(pod *corev1.Pod, typ corev1.PodConditionType, st corev1.ConditionStatus) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == typ {
			return c.Status == st
		}
	}
	return false
}
