package persistentvolume

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/storage/volume"

	"github.com/keelson/keelson/plugins/sdk"
)

// Event reasons of volumes, as upstream's.
const (
	reasonVolumeFailedDelete         = "VolumeFailedDelete"
	reasonVolumeFailedRecycle        = "VolumeFailedRecycle"
	reasonVolumeUnknownReclaimPolicy = "VolumeUnknownReclaimPolicy"
)

func (c *controller) syncVolumeKey(ctx context.Context, name string) (sdk.Result, error) {
	pv, ok := c.volume(name)
	if !ok {
		return sdk.Result{}, nil
	}
	return sdk.Result{}, c.syncVolume(ctx, pv)
}

// syncVolume keeps a volume's phase in line with its claim: Available
// while unclaimed or only pre-bound, Bound with its claim, Released (and
// reclaimed) once the claim is gone.
func (c *controller) syncVolume(ctx context.Context, pv *v1.PersistentVolume) error {
	ref := pv.Spec.ClaimRef
	if ref == nil || ref.UID == "" {
		// Unused, or pre-bound to a claim the claim's sync will bind.
		_, err := c.updateVolumePhase(ctx, pv, v1.VolumeAvailable, "")
		return err
	}
	claim, err := c.claimOfVolume(ctx, pv)
	if err != nil {
		return err
	}
	switch {
	case claim == nil:
		return c.releaseVolume(ctx, pv)
	case claim.Spec.VolumeName == "":
		if volume.CheckVolumeModeMismatches(&claim.Spec, &pv.Spec) {
			c.events.Event(pv, v1.EventTypeWarning, reasonVolumeMismatch, fmt.Sprintf("Cannot bind PersistentVolume to requested PersistentVolumeClaim %q due to incompatible volumeMode.", claim.Name))
			c.events.Event(claim, v1.EventTypeWarning, reasonVolumeMismatch, fmt.Sprintf("Cannot bind PersistentVolume %q to requested PersistentVolumeClaim due to incompatible volumeMode.", pv.Name))
			return nil
		}
		// Bound by a provisioner, the scheduler or the user, waiting for
		// the claim's side: its sync completes it.
		c.claimQueue.Add(claimKey(claim))
		return nil
	case claim.Spec.VolumeName == pv.Name:
		_, err := c.updateVolumePhase(ctx, pv, v1.VolumeBound, "")
		return err
	case metav1.HasAnnotation(pv.ObjectMeta, volume.AnnDynamicallyProvisioned) && pv.Spec.PersistentVolumeReclaimPolicy == v1.PersistentVolumeReclaimDelete:
		// Provisioned for a claim that got another volume: not needed.
		return c.releaseVolume(ctx, pv)
	default:
		// Bound to a claim that is bound elsewhere: undo the controller's
		// choice, or keep only the user's pre-binding.
		return c.unbindVolume(ctx, pv)
	}
}

// claimOfVolume returns the claim the volume's claimRef names, nil when it
// is gone (or replaced by one with another UID). Before declaring it gone it
// asks the API server, so a claim the cache has not shown yet (just
// created by a provisioner's user, or bound by the scheduler) never gets
// its volume released.
func (c *controller) claimOfVolume(ctx context.Context, pv *v1.PersistentVolume) (*v1.PersistentVolumeClaim, error) {
	ref := pv.Spec.ClaimRef
	key := ref.Namespace + "/" + ref.Name
	claim, found := c.claim(key)
	releasedAlready := pv.Status.Phase == v1.VolumeReleased || pv.Status.Phase == v1.VolumeFailed
	if (!found && !releasedAlready) || (found && claim.UID != ref.UID) {
		fresh, err := c.client.CoreV1().PersistentVolumeClaims(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("reading claim %s of volume %s: %w", key, pv.Name, err)
		}
		claim, found = fresh, true
	}
	if !found || claim.UID != ref.UID {
		return nil, nil
	}
	return claim, nil
}

// releaseVolume marks a volume whose claim is gone Released (a Failed one
// stays Failed, so the user sees what went wrong) and applies its reclaim
// policy.
func (c *controller) releaseVolume(ctx context.Context, pv *v1.PersistentVolume) error {
	if pv.Status.Phase != v1.VolumeReleased && pv.Status.Phase != v1.VolumeFailed {
		c.logger.Info("volume released; applying its reclaim policy", "volume", pv.Name, "reclaimPolicy", pv.Spec.PersistentVolumeReclaimPolicy)
		var err error
		if pv, err = c.updateVolumePhase(ctx, pv, v1.VolumeReleased, ""); err != nil {
			return err
		}
	}
	return c.reclaimVolume(ctx, pv)
}

// reclaimVolume applies the reclaim policy of a released volume. Retain
// keeps it Released for the administrator. Delete is the provisioner's
// work for a volume it provisioned (its name is on the volume); Keelson
// runs no in-tree deleter, so any other volume to delete fails as upstream
// fails one it has no plugin for. Recycle is deprecated and needs a
// plugin's recycler, which Keelson does not run either.
func (c *controller) reclaimVolume(ctx context.Context, pv *v1.PersistentVolume) error {
	switch pv.Spec.PersistentVolumeReclaimPolicy {
	case v1.PersistentVolumeReclaimRetain:
		return nil
	case v1.PersistentVolumeReclaimDelete:
		if p := pv.Annotations[volume.AnnDynamicallyProvisioned]; p != "" && !isInTree(p) || pv.Spec.CSI != nil {
			return nil // the external deleter's work
		}
		_, err := c.updateVolumePhaseWithEvent(ctx, pv, v1.VolumeFailed, v1.EventTypeWarning, reasonVolumeFailedDelete,
			fmt.Sprintf("error getting deleter volume plugin for volume %q: no deletable volume plugin matched", pv.Name))
		return err
	case v1.PersistentVolumeReclaimRecycle:
		_, err := c.updateVolumePhaseWithEvent(ctx, pv, v1.VolumeFailed, v1.EventTypeWarning, reasonVolumeFailedRecycle, "No recycler plugin found for the volume!")
		return err
	default:
		_, err := c.updateVolumePhaseWithEvent(ctx, pv, v1.VolumeFailed, v1.EventTypeWarning, reasonVolumeUnknownReclaimPolicy, "Volume has unrecognized PersistentVolumeReclaimPolicy")
		return err
	}
}

func isInTree(provisioner string) bool {
	return len(provisioner) >= len("kubernetes.io/") && provisioner[:len("kubernetes.io/")] == "kubernetes.io/"
}
