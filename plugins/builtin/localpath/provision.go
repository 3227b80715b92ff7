package localpath

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-helpers/storage/volume"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/sdk"
	"github.com/keelson/keelson/plugins/sdk/localstorage"
)

// Annotations and finalizer of provisioned volumes, as external
// provisioners set them.
const (
	annProvisionedBy = volume.AnnDynamicallyProvisioned
	// finalizer holds a provisioned volume with reclaim Delete until its
	// directory is removed.
	finalizer = volume.PVDeletionProtectionFinalizer
)

// Event reasons of external provisioners.
const (
	reasonProvisioning          = "Provisioning"
	reasonProvisioningSucceeded = "ProvisioningSucceeded"
	reasonProvisioningFailed    = "ProvisioningFailed"
	reasonVolumeFailedDelete    = "VolumeFailedDelete"
)

var claimKind = schema.GroupVersionKind{Version: "v1", Kind: "PersistentVolumeClaim"}

// errFinal marks a provisioning failure that retrying on the same node
// cannot fix: the scheduler is asked to choose again. errUnsupported marks
// a claim this provisioner cannot serve at all: it is not retried until
// the claim changes.
var (
	errFinal       = errors.New("final")
	errUnsupported = errors.New("unsupported")
)

// volumeName is the name of the volume provisioned for a claim.
func volumeName(claim *v1.PersistentVolumeClaim) string { return "pvc-" + string(claim.UID) }

// syncClaim provisions a volume for a claim handed to this provisioner
// (the PersistentVolume controller named it on the claim) once it knows
// the node.
func (c *controller) syncClaim(ctx context.Context, key string) (sdk.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return sdk.Result{}, nil
	}
	claim, err := c.claims.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, err
	}
	if claim.Spec.VolumeName != "" {
		return sdk.Result{}, c.resize(ctx, claim)
	}
	if !wantsProvisioning(claim) {
		return sdk.Result{}, nil
	}
	class, err := c.classes.Get(volume.GetPersistentVolumeClaimClass(claim))
	if apierrors.IsNotFound(err) || err == nil && class.Provisioner != localstorage.Provisioner {
		return sdk.Result{}, nil // the PersistentVolume controller reports a missing class
	}
	if err != nil {
		return sdk.Result{}, err
	}
	if _, err := c.volumes.Get(volumeName(claim)); err == nil {
		return sdk.Result{}, nil // provisioned; the binder completes the binding
	}
	node := claim.Annotations[volume.AnnSelectedNode]
	if node == "" && class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
		return sdk.Result{}, nil // the scheduler has not chosen a node yet
	}
	err = c.provision(ctx, claim, class, node)
	if err == nil {
		return sdk.Result{}, nil
	}
	c.events.Event(claim, v1.EventTypeWarning, reasonProvisioningFailed, fmt.Sprintf("failed to provision volume with StorageClass %q: %v", class.Name, err))
	switch {
	case errors.Is(err, errFinal):
		return sdk.Result{}, c.reschedule(ctx, claim)
	case errors.Is(err, errUnsupported):
		return sdk.Result{}, sdk.TerminalError(err)
	}
	return sdk.Result{}, err
}

// wantsProvisioning: an unbound claim, not being deleted, that names this
// provisioner.
func wantsProvisioning(claim *v1.PersistentVolumeClaim) bool {
	p := claim.Annotations[volume.AnnStorageProvisioner]
	if p == "" {
		p = claim.Annotations[volume.AnnBetaStorageProvisioner]
	}
	return p == localstorage.Provisioner && claim.Spec.VolumeName == "" && claim.DeletionTimestamp == nil
}

// provision creates the claim's volume on node.
func (c *controller) provision(ctx context.Context, claim *v1.PersistentVolumeClaim, class *storagev1.StorageClass, node string) error {
	if err := checkClaim(claim); err != nil {
		return err
	}
	if node == "" {
		return fmt.Errorf("%w: local-path volumes live on one node, chosen with the pod: give StorageClass %q volumeBindingMode WaitForFirstConsumer", errUnsupported, class.Name)
	}
	n, err := c.nodes.Get(node)
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: the selected node %q does not exist", errFinal, node)
	}
	if err != nil {
		return err
	}
	dir := n.Annotations[localstorage.StorageDirAnnotation]
	if dir == "" {
		return fmt.Errorf("%w: node %q has no %s annotation: it runs no Keelson agent that could hold the volume", errFinal, node, localstorage.StorageDirAnnotation)
	}
	c.events.Event(claim, v1.EventTypeNormal, reasonProvisioning, fmt.Sprintf("External provisioner is provisioning volume for claim %q", claim.Namespace+"/"+claim.Name))
	size := claim.Spec.Resources.Requests[v1.ResourceStorage]
	// The node makes the directory first, bounded where its filesystem
	// can: the volume's annotations then say what the node answered.
	state, err := c.storage.EnsureVolume(ctx, n, volumeName(claim), size.Value())
	if err != nil {
		return err
	}
	pv := newVolume(claim, class, n, dir, state)
	if _, err := c.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating PersistentVolume %s: %w", pv.Name, err)
	}
	c.events.Event(claim, v1.EventTypeNormal, reasonProvisioningSucceeded, fmt.Sprintf("Successfully provisioned volume %s", pv.Name))
	c.logCapacity("provisioned volume", claim, pv.Name, size.String(), state, "node", node, "path", pv.Spec.Local.Path)
	return nil
}

// logCapacity logs a provisioned or resized volume with whether its node
// enforces its capacity (a warning when it does not, with the reason).
func (c *controller) logCapacity(msg string, claim *v1.PersistentVolumeClaim, volume, size string, state localstorage.VolumeState, more ...any) {
	args := append([]any{"claim", claim.Namespace + "/" + claim.Name, "volume", volume, "size", size, "capacityEnforced", state.CapacityEnforced}, more...)
	if state.CapacityEnforced {
		c.logger.Info(msg, append(args, "enforcement", state.Enforcement)...)
		return
	}
	c.logger.Warn(msg+": capacity NOT enforced, the volume may grow until the node's disk is full", append(args, "reason", state.Reason)...)
}

// capacityAnnotations says on a volume what its node answered.
func capacityAnnotations(ann map[string]string, state localstorage.VolumeState) {
	ann[localstorage.AnnCapacityEnforced] = strconv.FormatBool(state.CapacityEnforced)
	ann[localstorage.AnnCapacityEnforcement] = state.Annotation()
}

// checkClaim refuses what a directory cannot be.
func checkClaim(claim *v1.PersistentVolumeClaim) error {
	switch {
	case claim.Spec.VolumeMode != nil && *claim.Spec.VolumeMode == v1.PersistentVolumeBlock:
		return fmt.Errorf("%w: local-path volumes are directories: volumeMode Block is not supported, use Filesystem", errUnsupported)
	case claim.Spec.DataSource != nil || claim.Spec.DataSourceRef != nil:
		return fmt.Errorf("%w: local-path volumes start empty: dataSource (cloning or restoring) is not supported", errUnsupported)
	case claim.Spec.Selector != nil:
		return fmt.Errorf("%w: claim Selector is not supported", errUnsupported)
	}
	if _, ok := claim.Spec.Resources.Requests[v1.ResourceStorage]; !ok {
		return fmt.Errorf("%w: the claim requests no storage size (spec.resources.requests.storage)", errUnsupported)
	}
	return nil
}

// newVolume is the local volume provisioned for claim on node n, whose
// agent keeps its volumes under dir and answered state for its directory.
func newVolume(claim *v1.PersistentVolumeClaim, class *storagev1.StorageClass, n *v1.Node, dir string, state localstorage.VolumeState) *v1.PersistentVolume {
	name := volumeName(claim)
	reclaim := ptr.Deref(class.ReclaimPolicy, v1.PersistentVolumeReclaimDelete)
	hostname := n.Labels[v1.LabelHostname]
	if hostname == "" {
		hostname = n.Name
	}
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{annProvisionedBy: localstorage.Provisioner, localstorage.NodeAnnotation: n.Name},
		},
		Spec: v1.PersistentVolumeSpec{
			Capacity:    v1.ResourceList{v1.ResourceStorage: claim.Spec.Resources.Requests[v1.ResourceStorage]},
			AccessModes: claim.Spec.AccessModes,
			ClaimRef: &v1.ObjectReference{Kind: claimKind.Kind, APIVersion: claimKind.GroupVersion().String(),
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID, ResourceVersion: claim.ResourceVersion},
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			MountOptions:                  class.MountOptions,
			VolumeMode:                    ptr.To(v1.PersistentVolumeFilesystem),
			PersistentVolumeSource: v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{
				Path: localstorage.VolumeDir(dir, name)}},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{hostname}}},
			}}}},
		},
	}
	capacityAnnotations(pv.Annotations, state)
	if reclaim == v1.PersistentVolumeReclaimDelete {
		pv.Finalizers = []string{finalizer}
	}
	return pv
}

// reschedule drops the claim's selected node, which tells the scheduler to
// place its pod again.
func (c *controller) reschedule(ctx context.Context, claim *v1.PersistentVolumeClaim) error {
	if _, ok := claim.Annotations[volume.AnnSelectedNode]; !ok {
		return nil
	}
	clone := claim.DeepCopy()
	delete(clone.Annotations, volume.AnnSelectedNode)
	if _, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).Update(ctx, clone, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("dropping the selected node of claim %s/%s: %w", claim.Namespace, claim.Name, err)
	}
	return nil
}
