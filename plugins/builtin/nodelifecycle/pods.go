package nodelifecycle

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// staleReady reports whether the pod claims to be Ready on a node that is
// not: its Ready=True was set before the node's Ready left True, so it
// comes from before the node stopped being trusted. Upstream marks such
// pods NotReady once, when the node's transition is seen; this rule is the
// level-triggered form of it. A Ready=True the agent sets after the node
// went NotReady is newer news, and stands.
func staleReady(pod *corev1.Pod, nodeReady *corev1.NodeCondition) bool {
	if nodeReady == nil || nodeReady.Status == corev1.ConditionTrue {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue && !c.LastTransitionTime.After(nodeReady.LastTransitionTime.Time)
		}
	}
	return false
}

// markNotReady sets the pod's Ready condition to False (its reason and
// message stay), on the condition that the pod is still the version the
// decision was made on.
func markNotReady(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, now metav1.Time) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": pod.ResourceVersion},
		"status": map[string]any{"conditions": []map[string]any{{
			"type": corev1.PodReady, "status": corev1.ConditionFalse, "lastTransitionTime": now,
		}}},
	})
	if err != nil {
		return fmt.Errorf("encoding the Ready condition of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	_, err = client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("marking pod %s/%s not ready: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}
