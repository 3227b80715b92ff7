package persistentvolume

import (
	"context"
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/component-helpers/storage/ephemeral"

	"github.com/keelson/keelson/plugins/sdk"
)

// The finalizers kube-apiserver's StorageObjectInUseProtection admission
// puts on every claim and volume.
const (
	claimProtectionFinalizer  = "kubernetes.io/pvc-protection"
	volumeProtectionFinalizer = "kubernetes.io/pv-protection"
)

// The Unused condition's reasons and messages, upstream's.
const (
	reasonPodUsingPVC    = "PodUsingPVC"
	messagePodUsingPVC   = "A pod is currently referencing this PVC"
	reasonNoPodsUsingPVC = "NoPodsUsingPVC"
	messageNoPodsUsing   = "No pods are currently referencing this PVC"
)

// syncClaimProtection removes the pvc-protection finalizer of a claim being
// deleted once no scheduled pod uses it (so deleting it, or its namespace,
// completes), adds it to a claim that lacks it, and keeps a bound claim's
// Unused condition.
func (c *controller) syncClaimProtection(ctx context.Context, key string) (sdk.Result, error) {
	claim, ok := c.claim(key)
	if !ok {
		return sdk.Result{}, nil
	}
	if claim.DeletionTimestamp == nil && claim.Status.Phase == v1.ClaimBound {
		if err := c.updateUnusedCondition(ctx, claim, c.claimReferenced(claim)); err != nil {
			return sdk.Result{}, err
		}
	}
	switch {
	case claim.DeletionTimestamp != nil && slices.Contains(claim.Finalizers, claimProtectionFinalizer):
		used, err := c.claimInUse(ctx, claim)
		if err != nil || used {
			return sdk.Result{}, err
		}
		return sdk.Result{}, c.setClaimFinalizers(ctx, claim, slices.DeleteFunc(slices.Clone(claim.Finalizers), func(f string) bool { return f == claimProtectionFinalizer }))
	case claim.DeletionTimestamp == nil && !slices.Contains(claim.Finalizers, claimProtectionFinalizer):
		// Claims created before the admission plugin ran lack it.
		return sdk.Result{}, c.setClaimFinalizers(ctx, claim, append(slices.Clone(claim.Finalizers), claimProtectionFinalizer))
	}
	return sdk.Result{}, nil
}

func (c *controller) setClaimFinalizers(ctx context.Context, claim *v1.PersistentVolumeClaim, finalizers []string) error {
	clone := claim.DeepCopy()
	clone.Finalizers = finalizers
	updated, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).Update(ctx, clone, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("updating the finalizers of claim %s: %w", claimKey(claim), err)
	}
	c.newClaims.wrote(claimKey(updated), updated)
	return nil
}

// claimInUse reports whether a scheduled pod uses the claim: first from
// the cache, then, since a pod may not be in the cache yet, from a live
// list of the namespace's pods, so the claim is never freed under a pod.
func (c *controller) claimInUse(ctx context.Context, claim *v1.PersistentVolumeClaim) (bool, error) {
	objs, err := c.pods.ByIndex(byClaim, claimKey(claim))
	if err != nil {
		return false, err
	}
	for _, o := range objs {
		if p, ok := o.(*v1.Pod); ok && podBlocksClaimDeletion(p, claim) {
			return true, nil
		}
	}
	list, err := c.client.CoreV1().Pods(claim.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, fmt.Errorf("listing the pods of namespace %s: %w", claim.Namespace, err)
	}
	for i := range list.Items {
		if podBlocksClaimDeletion(&list.Items[i], claim) {
			return true, nil
		}
	}
	c.logger.Info("claim is unused; removing its protection finalizer", "claim", claimKey(claim))
	return false, nil
}

// podBlocksClaimDeletion: a pod bound to a node that uses the claim keeps
// it (an unscheduled pod will not start with a claim being deleted). A
// shut-down pod (deleted with no grace left: its node is done with it, or
// it was force-deleted) no longer holds its ephemeral claim, so that a pod
// finalizer waiting for the claim cannot deadlock with it.
func podBlocksClaimDeletion(pod *v1.Pod, claim *v1.PersistentVolumeClaim) bool {
	if pod.Spec.NodeName == "" {
		return false
	}
	for i := range pod.Spec.Volumes {
		vol := &pod.Spec.Volumes[i]
		switch {
		case vol.PersistentVolumeClaim != nil && vol.PersistentVolumeClaim.ClaimName == claim.Name:
			return true
		case vol.Ephemeral != nil && !podShutDown(pod) && ephemeral.VolumeClaimName(pod, vol) == claim.Name && ephemeral.VolumeIsForPod(pod, claim) == nil:
			return true
		}
	}
	return false
}

func podShutDown(pod *v1.Pod) bool {
	return pod.DeletionTimestamp != nil && pod.DeletionGracePeriodSeconds != nil && *pod.DeletionGracePeriodSeconds == 0
}

// podTerminated: the pod finished, or is deleted and none of its
// containers runs.
func podTerminated(pod *v1.Pod) bool {
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		return true
	}
	if pod.DeletionTimestamp == nil {
		return false
	}
	for _, list := range [][]v1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, s := range list {
			if s.State.Terminated == nil && s.State.Waiting == nil {
				return false
			}
		}
	}
	return true
}

// claimReferenced reports whether a pod that has not terminated refers to
// the claim (scheduled or not), for the Unused condition.
func (c *controller) claimReferenced(claim *v1.PersistentVolumeClaim) bool {
	objs, _ := c.pods.ByIndex(byClaim, claimKey(claim))
	for _, o := range objs {
		p, ok := o.(*v1.Pod)
		if !ok || podTerminated(p) {
			continue
		}
		for i := range p.Spec.Volumes {
			vol := &p.Spec.Volumes[i]
			if vol.PersistentVolumeClaim != nil && vol.PersistentVolumeClaim.ClaimName == claim.Name ||
				vol.Ephemeral != nil && ephemeral.VolumeClaimName(p, vol) == claim.Name && ephemeral.VolumeIsForPod(p, claim) == nil {
				return true
			}
		}
	}
	return false
}

// updateUnusedCondition sets Unused=False while a pod refers to the claim
// and Unused=True otherwise, writing only on a change, so its transition
// time says since when the claim is unused.
func (c *controller) updateUnusedCondition(ctx context.Context, claim *v1.PersistentVolumeClaim, used bool) error {
	cond := v1.PersistentVolumeClaimCondition{Type: v1.PersistentVolumeClaimUnused, Status: v1.ConditionTrue,
		Reason: reasonNoPodsUsingPVC, Message: messageNoPodsUsing, LastTransitionTime: metav1.NewTime(c.clock.Now())}
	if used {
		cond.Status, cond.Reason, cond.Message = v1.ConditionFalse, reasonPodUsingPVC, messagePodUsingPVC
	}
	clone := claim.DeepCopy()
	i := slices.IndexFunc(clone.Status.Conditions, func(x v1.PersistentVolumeClaimCondition) bool { return x.Type == v1.PersistentVolumeClaimUnused })
	switch {
	case i >= 0 && clone.Status.Conditions[i].Status == cond.Status:
		return nil
	case i >= 0:
		clone.Status.Conditions[i] = cond
	default:
		clone.Status.Conditions = append(clone.Status.Conditions, cond)
	}
	updated, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).UpdateStatus(ctx, clone, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("setting the Unused condition of claim %s: %w", claimKey(claim), err)
	}
	c.newClaims.wrote(claimKey(updated), updated)
	return nil
}

// syncVolumeProtection removes the pv-protection finalizer of a volume
// being deleted once it is not Bound, and adds it to a volume that lacks it.
func (c *controller) syncVolumeProtection(ctx context.Context, name string) (sdk.Result, error) {
	pv, ok := c.volume(name)
	if !ok {
		return sdk.Result{}, nil
	}
	has := sets.New(pv.Finalizers...).Has(volumeProtectionFinalizer)
	var want []string
	switch {
	case pv.DeletionTimestamp != nil && has && pv.Status.Phase != v1.VolumeBound:
		want = slices.DeleteFunc(slices.Clone(pv.Finalizers), func(f string) bool { return f == volumeProtectionFinalizer })
	case pv.DeletionTimestamp == nil && !has:
		want = append(slices.Clone(pv.Finalizers), volumeProtectionFinalizer)
	default:
		return sdk.Result{}, nil
	}
	clone := pv.DeepCopy()
	clone.Finalizers = want
	updated, err := c.client.CoreV1().PersistentVolumes().Update(ctx, clone, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, fmt.Errorf("updating the finalizers of volume %s: %w", name, err)
	}
	c.newVolumes.wrote(updated.Name, updated)
	return sdk.Result{}, nil
}
