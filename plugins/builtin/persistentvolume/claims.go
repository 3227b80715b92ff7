package persistentvolume

import (
	"context"
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/storage/volume"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/sdk"
)

// Event reasons upstream's binder uses.
const (
	reasonFailedBinding        = "FailedBinding"
	reasonVolumeMismatch       = "VolumeMismatch"
	reasonExternalProvisioning = "ExternalProvisioning"
	reasonProvisioningFailed   = "ProvisioningFailed"
	reasonWaitForFirstConsumer = "WaitForFirstConsumer"
	reasonWaitForPodScheduled  = "WaitForPodScheduled"
	reasonClaimLost            = "ClaimLost"
	reasonClaimMisbound        = "ClaimMisbound"
	reasonExternalExpanding    = "ExternalExpanding"
)

// Default-class annotations of a StorageClass (GA and beta).
const (
	annDefaultClass     = "storageclass.kubernetes.io/is-default-class"
	annBetaDefaultClass = "storageclass.beta.kubernetes.io/is-default-class"
)

func (c *controller) syncClaimKey(ctx context.Context, key string) (sdk.Result, error) {
	claim, ok := c.claim(key)
	if !ok {
		return sdk.Result{}, nil
	}
	if !metav1.HasAnnotation(claim.ObjectMeta, volume.AnnBindCompleted) {
		return sdk.Result{}, c.syncUnboundClaim(ctx, claim)
	}
	if err := c.syncBoundClaim(ctx, claim); err != nil {
		return sdk.Result{}, err
	}
	c.noteExpansion(claim)
	return sdk.Result{}, nil
}

// noteExpansion says, as upstream's expand controller does for a volume
// no in-tree plugin can grow, that a bound claim asking for more than it
// has waits for an external resizer (the local-path provisioner is one),
// until that resizer starts.
func (c *controller) noteExpansion(claim *v1.PersistentVolumeClaim) {
	want := claim.Spec.Resources.Requests[v1.ResourceStorage]
	have, ok := claim.Status.Capacity[v1.ResourceStorage]
	if claim.Status.Phase != v1.ClaimBound || !ok || want.Cmp(have) <= 0 || claim.Status.AllocatedResourceStatuses[v1.ResourceStorage] != "" {
		return
	}
	c.events.Event(claim, v1.EventTypeNormal, reasonExternalExpanding, "waiting for an external controller to expand this PVC")
}

// syncUnboundClaim binds a claim that has not completed binding: to the
// volume it names, or to the best matching one, or asks its class's
// provisioner for one.
func (c *controller) syncUnboundClaim(ctx context.Context, claim *v1.PersistentVolumeClaim) error {
	if claim.Spec.VolumeName != "" {
		return c.syncClaimWithVolumeName(ctx, claim)
	}
	delayBinding, err := volume.IsDelayBindingMode(claim, c.classes)
	if err != nil {
		return err
	}
	pv, err := c.findBestMatch(claim, delayBinding)
	if err != nil {
		return fmt.Errorf("finding a volume for claim %s: %w", claimKey(claim), err)
	}
	if pv != nil {
		return c.bind(ctx, pv, claim)
	}
	if assigned, err := c.assignDefaultClass(ctx, claim); err != nil || assigned {
		return err
	}
	switch {
	case delayBinding && !volume.IsDelayBindingProvisioning(claim):
		c.eventForDelayedClaim(claim)
	case volume.GetPersistentVolumeClaimClass(claim) != "":
		// The provisioner binds its volume to the claim; the next sync of
		// the claim completes the binding.
		return c.provision(ctx, claim)
	default:
		c.events.Event(claim, v1.EventTypeNormal, reasonFailedBinding, "no persistent volumes available for this claim and no storage class is set")
	}
	_, err = c.updateClaimStatus(ctx, claim, v1.ClaimPending, nil)
	return err
}

// syncClaimWithVolumeName binds a claim to the volume it names, if that
// volume exists, satisfies it and is not someone else's.
func (c *controller) syncClaimWithVolumeName(ctx context.Context, claim *v1.PersistentVolumeClaim) error {
	pv, found := c.volume(claim.Spec.VolumeName)
	switch {
	case !found:
		// It may be created later.
		_, err := c.updateClaimStatus(ctx, claim, v1.ClaimPending, nil)
		return err
	case pv.Spec.ClaimRef == nil:
		if err := checkVolumeSatisfiesClaim(pv, claim); err != nil {
			c.events.Event(claim, v1.EventTypeWarning, reasonVolumeMismatch, fmt.Sprintf("Cannot bind to requested volume %q: %s", pv.Name, err))
			_, err := c.updateClaimStatus(ctx, claim, v1.ClaimPending, nil)
			return err
		}
		return c.bind(ctx, pv, claim)
	case volume.IsVolumeBoundToClaim(pv, claim):
		return c.bind(ctx, pv, claim)
	case !metav1.HasAnnotation(claim.ObjectMeta, volume.AnnBoundByController):
		c.events.Event(claim, v1.EventTypeWarning, reasonFailedBinding, fmt.Sprintf("volume %q already bound to a different claim.", pv.Name))
		_, err := c.updateClaimStatus(ctx, claim, v1.ClaimPending, nil)
		return err
	default:
		// Only a removed bind-completed annotation leads here.
		c.events.Event(claim, v1.EventTypeWarning, reasonFailedBinding, fmt.Sprintf("volume %q already bound to a different claim.", pv.Name))
		return fmt.Errorf("invalid binding of claim %s to volume %q: the volume is claimed by %s/%s",
			claimKey(claim), pv.Name, pv.Spec.ClaimRef.Namespace, pv.Spec.ClaimRef.Name)
	}
}

// checkVolumeSatisfiesClaim says why a volume the claim names cannot be
// bound to it (the claim's selector does not apply to a named volume).
func checkVolumeSatisfiesClaim(pv *v1.PersistentVolume, claim *v1.PersistentVolumeClaim) error {
	want := claim.Spec.Resources.Requests[v1.ResourceStorage]
	have := pv.Spec.Capacity[v1.ResourceStorage]
	switch {
	case pv.DeletionTimestamp != nil:
		return fmt.Errorf("the volume is marked for deletion %q", pv.Name)
	case have.Value() < want.Value():
		return fmt.Errorf("requested PV is too small")
	case volume.GetPersistentVolumeClass(pv) != volume.GetPersistentVolumeClaimClass(claim):
		return fmt.Errorf("storageClassName does not match")
	case ptr.Deref(claim.Spec.VolumeAttributesClassName, "") != ptr.Deref(pv.Spec.VolumeAttributesClassName, ""):
		return fmt.Errorf("volumeAttributesClassName does not match")
	case volume.CheckVolumeModeMismatches(&claim.Spec, &pv.Spec):
		return fmt.Errorf("incompatible volumeMode")
	case !volume.CheckAccessModes(claim, pv):
		return fmt.Errorf("incompatible accessMode")
	}
	return nil
}

// syncBoundClaim keeps a bound claim and its volume consistent, or marks
// the claim Lost when its volume is gone or belongs to another claim.
func (c *controller) syncBoundClaim(ctx context.Context, claim *v1.PersistentVolumeClaim) error {
	if claim.Spec.VolumeName == "" {
		return c.claimLost(ctx, claim, reasonClaimLost, "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!")
	}
	pv, found := c.volume(claim.Spec.VolumeName)
	switch {
	case !found:
		return c.claimLost(ctx, claim, reasonClaimLost, "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
	case pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID == claim.UID:
		// Unbound volume (or a cache behind): bind it again; bound: make
		// sure every status says so.
		return c.bind(ctx, pv, claim)
	default:
		return c.claimLost(ctx, claim, reasonClaimMisbound, "Two claims are bound to the same volume, this one is bound incorrectly")
	}
}

// claimLost sets the terminal Lost phase, with an event when it changes.
func (c *controller) claimLost(ctx context.Context, claim *v1.PersistentVolumeClaim, reason, msg string) error {
	if claim.Status.Phase == v1.ClaimLost {
		return nil
	}
	if _, err := c.updateClaimStatus(ctx, claim, v1.ClaimLost, nil); err != nil {
		return err
	}
	c.events.Event(claim, v1.EventTypeWarning, reason, msg)
	return nil
}

// assignDefaultClass gives a claim with no class at all (nil, not "") the
// default StorageClass, as upstream does for claims created before the
// default class existed.
func (c *controller) assignDefaultClass(ctx context.Context, claim *v1.PersistentVolumeClaim) (bool, error) {
	if volume.PersistentVolumeClaimHasClass(claim) {
		return false, nil
	}
	class, err := c.defaultClass()
	if err != nil || class == nil {
		return false, err
	}
	clone := claim.DeepCopy()
	clone.Spec.StorageClassName = &class.Name
	updated, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).Update(ctx, clone, metav1.UpdateOptions{})
	if err != nil {
		return false, fmt.Errorf("giving claim %s the default StorageClass %q: %w", claimKey(claim), class.Name, err)
	}
	c.newClaims.wrote(claimKey(updated), updated)
	c.logger.Info("assigned the default StorageClass to a claim", "claim", claimKey(claim), "storageClass", class.Name)
	return true, nil
}

// defaultClass is the newest StorageClass marked default (by name on a
// tie), nil when none is.
func (c *controller) defaultClass() (*storagev1.StorageClass, error) {
	all, err := c.classes.List(everything)
	if err != nil {
		return nil, err
	}
	var defaults []*storagev1.StorageClass
	for _, sc := range all {
		if sc.Annotations[annDefaultClass] == "true" || sc.Annotations[annBetaDefaultClass] == "true" {
			defaults = append(defaults, sc)
		}
	}
	if len(defaults) == 0 {
		return nil, nil
	}
	slices.SortFunc(defaults, func(a, b *storagev1.StorageClass) int {
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return b.CreationTimestamp.Compare(a.CreationTimestamp.Time)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return defaults[0], nil
}

// eventForDelayedClaim tells why a claim of a WaitForFirstConsumer class
// is not bound: no pod uses it yet, or its pods are not scheduled.
func (c *controller) eventForDelayedClaim(claim *v1.PersistentVolumeClaim) {
	var waiting []string
	objs, _ := c.pods.ByIndex(byClaim, claimKey(claim))
	for _, o := range objs {
		if p, ok := o.(*v1.Pod); ok && p.Spec.NodeName == "" && !podTerminated(p) {
			waiting = append(waiting, p.Name)
		}
	}
	slices.Sort(waiting)
	switch len(waiting) {
	case 0:
		c.events.Event(claim, v1.EventTypeNormal, reasonWaitForFirstConsumer, "waiting for first consumer to be created before binding")
	case 1:
		c.events.Event(claim, v1.EventTypeNormal, reasonWaitForPodScheduled, fmt.Sprintf("waiting for pod %s to be scheduled", waiting[0]))
	default:
		c.events.Event(claim, v1.EventTypeNormal, reasonWaitForPodScheduled, fmt.Sprintf("waiting for pods %s to be scheduled", strings.Join(waiting, ",")))
	}
}

// provision hands the claim to its class's provisioner: it names the
// provisioner on the claim (the annotation the provisioner watches for)
// and says so in an event. Keelson runs no in-tree volume plugins, so a
// kubernetes.io/ provisioner is refused, as upstream refuses one it lacks.
func (c *controller) provision(ctx context.Context, claim *v1.PersistentVolumeClaim) error {
	className := volume.GetPersistentVolumeClaimClass(claim)
	class, err := c.classes.Get(className)
	if err != nil {
		if apierrors.IsNotFound(err) {
			c.events.Event(claim, v1.EventTypeWarning, reasonProvisioningFailed, fmt.Sprintf("storageclass.storage.k8s.io %q not found", className))
			return nil
		}
		return err
	}
	if strings.HasPrefix(class.Provisioner, "kubernetes.io/") {
		c.events.Event(claim, v1.EventTypeWarning, reasonProvisioningFailed, fmt.Sprintf("no volume plugin matched name: %s", class.Provisioner))
		return nil
	}
	if claim.Annotations[volume.AnnStorageProvisioner] != class.Provisioner {
		clone := claim.DeepCopy()
		metav1.SetMetaDataAnnotation(&clone.ObjectMeta, volume.AnnStorageProvisioner, class.Provisioner)
		metav1.SetMetaDataAnnotation(&clone.ObjectMeta, volume.AnnBetaStorageProvisioner, class.Provisioner)
		updated, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).Update(ctx, clone, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("naming provisioner %q on claim %s: %w", class.Provisioner, claimKey(claim), err)
		}
		c.newClaims.wrote(claimKey(updated), updated)
		claim = updated
	}
	c.events.Event(claim, v1.EventTypeNormal, reasonExternalProvisioning, fmt.Sprintf(
		"Waiting for a volume to be created either by the external provisioner '%s' or manually by the system administrator. "+
			"If volume creation is delayed, please verify that the provisioner is running and correctly registered.", class.Provisioner))
	return nil
}
