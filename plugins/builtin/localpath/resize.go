package localpath

import (
	"context"
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/plugins/sdk/localstorage"
)

// Event reasons of external resizers.
const (
	reasonResizing               = "Resizing"
	reasonVolumeResizeSuccessful = "VolumeResizeSuccessful"
	reasonVolumeResizeFailed     = "VolumeResizeFailed"
)

// resize applies a larger request of a bound claim to its volume, as an
// external resizer does for a volume that needs no work on the node: the
// claim's allocatedResources and ControllerResizeInProgress status with a
// Resizing condition first, then the volume's capacity, then the claim's
// capacity with the resize status cleared. The node raises the bound of
// the volume's directory before the volume's capacity grows (its answer
// refreshes the volume's capacity annotations).
func (c *controller) resize(ctx context.Context, claim *v1.PersistentVolumeClaim) error {
	if claim.Status.Phase != v1.ClaimBound || claim.DeletionTimestamp != nil {
		return nil
	}
	want := claim.Spec.Resources.Requests[v1.ResourceStorage]
	have, ok := claim.Status.Capacity[v1.ResourceStorage]
	if !ok || want.Cmp(have) <= 0 {
		return nil
	}
	pv, err := c.volumes.Get(claim.Spec.VolumeName)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pv.Annotations[annProvisionedBy] != localstorage.Provisioner || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != claim.UID {
		return nil
	}
	claim, err = c.startResize(ctx, claim, want)
	if err != nil {
		return err
	}
	state, err := c.expandOnNode(ctx, claim, pv, want)
	if err != nil {
		return err
	}
	if cur := pv.Spec.Capacity[v1.ResourceStorage]; cur.Cmp(want) < 0 {
		clone := pv.DeepCopy()
		clone.Spec.Capacity[v1.ResourceStorage] = want
		capacityAnnotations(clone.Annotations, state)
		if _, err := c.client.CoreV1().PersistentVolumes().Update(ctx, clone, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("setting the capacity of volume %s to %s: %w", pv.Name, want.String(), err)
		}
	}
	done := claim.DeepCopy()
	done.Status.Capacity = v1.ResourceList{v1.ResourceStorage: want}
	delete(done.Status.AllocatedResourceStatuses, v1.ResourceStorage)
	done.Status.Conditions = slices.DeleteFunc(done.Status.Conditions, func(c v1.PersistentVolumeClaimCondition) bool {
		return c.Type == v1.PersistentVolumeClaimResizing || c.Type == v1.PersistentVolumeClaimFileSystemResizePending
	})
	if _, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).UpdateStatus(ctx, done, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("finishing the resize of claim %s/%s: %w", claim.Namespace, claim.Name, err)
	}
	c.events.Event(claim, v1.EventTypeNormal, reasonVolumeResizeSuccessful, "Resize volume succeeded")
	c.logCapacity("resized volume", claim, pv.Name, want.String(), state)
	return nil
}

// expandOnNode has the volume's node raise the bound of its directory to
// want. A failure is a VolumeResizeFailed warning on the claim and is
// retried.
func (c *controller) expandOnNode(ctx context.Context, claim *v1.PersistentVolumeClaim, pv *v1.PersistentVolume, want resource.Quantity) (localstorage.VolumeState, error) {
	nodeName := pv.Annotations[localstorage.NodeAnnotation]
	node, err := c.nodes.Get(nodeName)
	if err != nil {
		err = fmt.Errorf("the node %q of volume %s: %w", nodeName, pv.Name, err)
	} else {
		var state localstorage.VolumeState
		if state, err = c.storage.EnsureVolume(ctx, node, pv.Name, want.Value()); err == nil {
			return state, nil
		}
	}
	c.events.Event(claim, v1.EventTypeWarning, reasonVolumeResizeFailed, fmt.Sprintf("resize volume %q by resizer %q failed: %v", pv.Name, localstorage.Provisioner, err))
	return localstorage.VolumeState{}, err
}

// startResize records on the claim that its volume is being resized to want.
func (c *controller) startResize(ctx context.Context, claim *v1.PersistentVolumeClaim, want resource.Quantity) (*v1.PersistentVolumeClaim, error) {
	if claim.Status.AllocatedResourceStatuses[v1.ResourceStorage] == v1.PersistentVolumeClaimControllerResizeInProgress {
		return claim, nil
	}
	clone := claim.DeepCopy()
	if clone.Status.AllocatedResources == nil {
		clone.Status.AllocatedResources = v1.ResourceList{}
	}
	clone.Status.AllocatedResources[v1.ResourceStorage] = want
	if clone.Status.AllocatedResourceStatuses == nil {
		clone.Status.AllocatedResourceStatuses = map[v1.ResourceName]v1.ClaimResourceStatus{}
	}
	clone.Status.AllocatedResourceStatuses[v1.ResourceStorage] = v1.PersistentVolumeClaimControllerResizeInProgress
	clone.Status.Conditions = append(slices.DeleteFunc(clone.Status.Conditions, func(c v1.PersistentVolumeClaimCondition) bool {
		return c.Type == v1.PersistentVolumeClaimResizing
	}), v1.PersistentVolumeClaimCondition{Type: v1.PersistentVolumeClaimResizing, Status: v1.ConditionTrue, LastTransitionTime: metav1.Now()})
	updated, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).UpdateStatus(ctx, clone, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("starting the resize of claim %s/%s: %w", claim.Namespace, claim.Name, err)
	}
	c.events.Event(updated, v1.EventTypeNormal, reasonResizing, fmt.Sprintf("External resizer is resizing volume %s", claim.Spec.VolumeName))
	return updated, nil
}
