package podgc

import (
	"context"
	"encoding/json"
	"fmt"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
)

// parallelDeletes bounds how many pods one pass deletes at once.
const parallelDeletes = 16

// deleteAll force-deletes ps, in parallel; failures are logged, and the
// pods are found again by the next pass.
func (c *controller) deleteAll(ctx context.Context, why string, ps []*v1.Pod, cond *v1.PodCondition) {
	if len(ps) == 0 {
		return
	}
	c.logger.Info("garbage collecting pods", "reason", why, "count", len(ps))
	workqueue.ParallelizeUntil(ctx, parallelDeletes, len(ps), func(i int) {
		p := ps[i]
		if err := c.failAndDelete(ctx, p, cond); err != nil {
			c.logger.Warn("garbage collecting a pod failed", "reason", why, "pod", p.Namespace+"/"+p.Name, "error", err)
			return
		}
		c.logger.Info("force deleted pod", "reason", why, "pod", p.Namespace+"/"+p.Name, "node", p.Spec.NodeName)
	})
}

// failAndDelete sets a pod that has not finished to phase Failed (with
// cond, when given), since no kubelet will, then deletes it with grace
// period 0. Both writes are conditioned on the pod's UID, so a pod
// re-created under the same name is left alone. A pod already gone is
// not an error.
func (c *controller) failAndDelete(ctx context.Context, p *v1.Pod, cond *v1.PodCondition) error {
	if p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed {
		patch, err := failedPatch(p, cond, metav1.NewTime(c.clock.Now()))
		if err != nil {
			return err
		}
		_, err = c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // gone, or another pod of that name
		}
		if err != nil {
			return fmt.Errorf("setting phase Failed: %w", err)
		}
	}
	opts := metav1.NewDeleteOptions(0)
	opts.Preconditions = metav1.NewUIDPreconditions(string(p.UID))
	err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, *opts)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting: %w", err)
	}
	return nil
}

// failedPatch is the strategic merge patch of the pod's status to phase
// Failed, observed at its generation, with cond merged into its
// conditions by type (keeping the transition time of a condition whose
// status does not change). metadata.uid makes it apply to this pod only.
func failedPatch(p *v1.Pod, cond *v1.PodCondition, now metav1.Time) ([]byte, error) {
	status := map[string]any{"phase": v1.PodFailed, "observedGeneration": p.Generation}
	if cond != nil {
		c := *cond
		c.ObservedGeneration = p.Generation
		c.LastTransitionTime = now
		for _, old := range p.Status.Conditions {
			if old.Type == c.Type && old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		status["conditions"] = []v1.PodCondition{c}
	}
	return json.Marshal(map[string]any{"metadata": map[string]any{"uid": p.UID}, "status": status})
}
