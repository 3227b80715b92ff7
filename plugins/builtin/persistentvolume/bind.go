package persistentvolume

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/component-helpers/storage/volume"
	"k8s.io/utils/ptr"
)

var everything = labels.Everything()

// bind completes a binding in upstream's order, each step skipped when
// already done: the volume's claimRef, its Bound phase, the claim's
// volumeName and annotations, its Bound status. A failure leaves a state
// the next sync of either object continues from.
func (c *controller) bind(ctx context.Context, pv *v1.PersistentVolume, claim *v1.PersistentVolumeClaim) error {
	pv, err := c.bindVolumeToClaim(ctx, pv, claim)
	if err != nil {
		return err
	}
	if pv, err = c.updateVolumePhase(ctx, pv, v1.VolumeBound, ""); err != nil {
		return err
	}
	if claim, err = c.bindClaimToVolume(ctx, claim, pv); err != nil {
		return err
	}
	_, err = c.updateClaimStatus(ctx, claim, v1.ClaimBound, pv)
	return err
}

// bindVolumeToClaim points the volume's claimRef at the claim (with its
// UID), marking it bound-by-controller unless the user pre-bound it.
func (c *controller) bindVolumeToClaim(ctx context.Context, pv *v1.PersistentVolume, claim *v1.PersistentVolumeClaim) (*v1.PersistentVolume, error) {
	clone, dirty, err := volume.GetBindVolumeToClaim(pv, claim)
	if err != nil || !dirty {
		return pv, err
	}
	updated, err := c.client.CoreV1().PersistentVolumes().Update(ctx, clone, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("binding volume %s to claim %s: %w", pv.Name, claimKey(claim), err)
	}
	c.newVolumes.wrote(updated.Name, updated)
	c.logger.Info("bound volume to claim", "volume", pv.Name, "claim", claimKey(claim))
	return updated, nil
}

// bindClaimToVolume sets the claim's volumeName (bound-by-controller when
// the controller chose it) and bind-completed.
func (c *controller) bindClaimToVolume(ctx context.Context, claim *v1.PersistentVolumeClaim, pv *v1.PersistentVolume) (*v1.PersistentVolumeClaim, error) {
	clone := claim.DeepCopy()
	dirty := false
	if claim.Spec.VolumeName != pv.Name {
		clone.Spec.VolumeName = pv.Name
		if !metav1.HasAnnotation(clone.ObjectMeta, volume.AnnBoundByController) {
			metav1.SetMetaDataAnnotation(&clone.ObjectMeta, volume.AnnBoundByController, "yes")
		}
		dirty = true
	}
	if !metav1.HasAnnotation(clone.ObjectMeta, volume.AnnBindCompleted) {
		metav1.SetMetaDataAnnotation(&clone.ObjectMeta, volume.AnnBindCompleted, "yes")
		dirty = true
	}
	if !dirty {
		return claim, nil
	}
	updated, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).Update(ctx, clone, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("binding claim %s to volume %s: %w", claimKey(claim), pv.Name, err)
	}
	c.newClaims.wrote(claimKey(updated), updated)
	return updated, nil
}

// updateClaimStatus sets the claim's phase, and its access modes, capacity
// and current attributes class from the volume (cleared without one). The
// capacity is copied when the claim becomes bound only: a difference later
// may be deliberate (a filesystem smaller than its device).
func (c *controller) updateClaimStatus(ctx context.Context, claim *v1.PersistentVolumeClaim, phase v1.PersistentVolumeClaimPhase, pv *v1.PersistentVolume) (*v1.PersistentVolumeClaim, error) {
	clone := claim.DeepCopy()
	clone.Status.Phase = phase
	if pv == nil {
		clone.Status.AccessModes, clone.Status.Capacity, clone.Status.CurrentVolumeAttributesClassName = nil, nil, nil
	} else {
		clone.Status.AccessModes = pv.Spec.AccessModes
		clone.Status.CurrentVolumeAttributesClassName = pv.Spec.VolumeAttributesClassName
		if claim.Status.Phase != phase {
			capacity, ok := pv.Spec.Capacity[v1.ResourceStorage]
			if !ok {
				return nil, fmt.Errorf("PersistentVolume %q is without a storage capacity", pv.Name)
			}
			if have, ok := claim.Status.Capacity[v1.ResourceStorage]; !ok || capacity.Cmp(have) != 0 {
				clone.Status.Capacity = pv.Spec.Capacity
			}
		}
	}
	if claimStatusEqual(&claim.Status, &clone.Status) {
		return claim, nil
	}
	updated, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).UpdateStatus(ctx, clone, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("setting claim %s to %s: %w", claimKey(claim), phase, err)
	}
	c.newClaims.wrote(claimKey(updated), updated)
	return updated, nil
}

func claimStatusEqual(a, b *v1.PersistentVolumeClaimStatus) bool {
	return a.Phase == b.Phase && apiequality.Semantic.DeepEqual(a.AccessModes, b.AccessModes) &&
		apiequality.Semantic.DeepEqual(a.Capacity, b.Capacity) &&
		ptr.Equal(a.CurrentVolumeAttributesClassName, b.CurrentVolumeAttributesClassName)
}

// updateVolumePhase sets the volume's phase and message (the API server
// stamps lastPhaseTransitionTime).
func (c *controller) updateVolumePhase(ctx context.Context, pv *v1.PersistentVolume, phase v1.PersistentVolumePhase, msg string) (*v1.PersistentVolume, error) {
	if pv.Status.Phase == phase {
		return pv, nil
	}
	clone := pv.DeepCopy()
	clone.Status.Phase, clone.Status.Message = phase, msg
	updated, err := c.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, clone, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("setting volume %s to %s: %w", pv.Name, phase, err)
	}
	c.newVolumes.wrote(updated.Name, updated)
	return updated, nil
}

// updateVolumePhaseWithEvent sets the phase and, when it changed, records
// the event.
func (c *controller) updateVolumePhaseWithEvent(ctx context.Context, pv *v1.PersistentVolume, phase v1.PersistentVolumePhase, typ, reason, msg string) (*v1.PersistentVolume, error) {
	if pv.Status.Phase == phase {
		return pv, nil
	}
	updated, err := c.updateVolumePhase(ctx, pv, phase, msg)
	if err != nil {
		return nil, err
	}
	c.events.Event(updated, typ, reason, msg)
	return updated, nil
}

// unbindVolume makes the volume available again: the controller's own
// binding is undone; a user's pre-binding keeps the claim's name and loses
// only its UID.
func (c *controller) unbindVolume(ctx context.Context, pv *v1.PersistentVolume) error {
	clone := pv.DeepCopy()
	if metav1.HasAnnotation(pv.ObjectMeta, volume.AnnBoundByController) {
		clone.Spec.ClaimRef = nil
		delete(clone.Annotations, volume.AnnBoundByController)
		if len(clone.Annotations) == 0 {
			clone.Annotations = nil
		}
	} else {
		clone.Spec.ClaimRef.UID = ""
	}
	updated, err := c.client.CoreV1().PersistentVolumes().Update(ctx, clone, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("unbinding volume %s: %w", pv.Name, err)
	}
	c.newVolumes.wrote(updated.Name, updated)
	_, err = c.updateVolumePhase(ctx, updated, v1.VolumeAvailable, "")
	return err
}
