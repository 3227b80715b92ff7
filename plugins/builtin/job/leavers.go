package job

import (
	"context"
	"encoding/json"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/sdk"
)

// The pod cache holds only pods with the job-name label, so a pod whose
// labels are edited to drop it leaves the cache as if it were deleted,
// though it still exists. Such a pod, if a Job controls it and no longer
// matches that Job's selector, is released (its controller reference
// removed, as upstream's claim does for a non-matching pod) and, with no
// Job left to count it, loses its tracking finalizer.

// mayStillExist reports whether a pod removed from the cache may only have
// left the cache's label selection. The API server's delete event for an
// object that stops matching a watch's selector carries the object's last
// matching version, labels included, so the event cannot tell; a pod whose
// deletion had begun (every graceful deletion, which is how the garbage
// collector, the Job controller and kubectl delete pods) is really gone.
// The others, and tombstones, are read afresh by syncLeaver.
func mayStillExist(obj any) (*v1.Pod, bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	p, ok := obj.(*v1.Pod)
	if !ok || p.DeletionTimestamp != nil {
		return nil, false
	}
	return p, true
}

// syncLeaver releases the pod key, read afresh, from a Job whose selector
// it no longer matches, and removes its tracking finalizer when no Job
// will count it.
func (c *Controller) syncLeaver(ctx context.Context, key string) (sdk.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return sdk.Result{}, nil
	}
	pod, err := c.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, fmt.Errorf("reading pod %s: %w", key, err)
	}
	if _, labelled := pod.Labels[batchv1.JobNameLabel]; labelled {
		return sdk.Result{}, nil // back in the cache: the Job's sync claims it
	}
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		job := c.jobOf(ns, ref)
		if job == nil || job.DeletionTimestamp != nil {
			return sdk.Result{}, nil // the garbage collector's, or another kind's
		}
		sel, err := metav1.LabelSelectorAsSelector(job.Spec.Selector)
		if err != nil || sel.Matches(labels.Set(pod.Labels)) {
			return sdk.Result{}, nil
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
			"uid":             pod.UID,
			"ownerReferences": []map[string]any{{"$patch": "delete", "uid": ref.UID}},
		}})
		pod, err = c.client.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		if apierrors.IsNotFound(err) {
			return sdk.Result{}, nil
		}
		if err != nil {
			return sdk.Result{}, fmt.Errorf("releasing pod %s from job %s: %w", key, job.Name, err)
		}
		c.logger.Info("released a pod that no longer matches its job's selector", "pod", key, "job", job.Name)
		c.enqueueJob(job)
	}
	if hasFinalizer(pod) && metav1.GetControllerOfNoCopy(pod) == nil && len(c.jobsSelecting(pod)) == 0 {
		return sdk.Result{}, c.removeFinalizer(ctx, pod)
	}
	return sdk.Result{}, nil
}
