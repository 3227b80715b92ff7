package localpath

import (
	"context"
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/plugins/sdk"
	"github.com/keelson/keelson/plugins/sdk/localstorage"
)

// syncVolume reclaims a provisioned volume: once Released with reclaim
// Delete its directory is removed on its node, then the object is
// deleted; a volume deleted by hand keeps its finalizer until the same is
// done. Only reclaim Delete holds the object: with Retain the data stays
// whatever becomes of it.
func (c *controller) syncVolume(ctx context.Context, name string) (sdk.Result, error) {
	pv, err := c.volumes.Get(name)
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, err
	}
	if pv.Annotations[annProvisionedBy] != localstorage.Provisioner {
		return sdk.Result{}, nil
	}
	deleteData := pv.Spec.PersistentVolumeReclaimPolicy == v1.PersistentVolumeReclaimDelete
	held := slices.Contains(pv.Finalizers, finalizer)
	switch {
	case pv.DeletionTimestamp == nil && deleteData && pv.Status.Phase == v1.VolumeReleased:
		if err := c.removeDirectory(ctx, pv); err != nil {
			return sdk.Result{}, err
		}
		if err := c.dropFinalizer(ctx, pv); err != nil {
			return sdk.Result{}, err
		}
		return sdk.Result{}, c.deleteVolume(ctx, pv)
	case pv.DeletionTimestamp == nil && deleteData && !held:
		clone := pv.DeepCopy()
		clone.Finalizers = append(clone.Finalizers, finalizer)
		_, err := c.client.CoreV1().PersistentVolumes().Update(ctx, clone, metav1.UpdateOptions{})
		return sdk.Result{}, ignoreNotFound(err, "adding the finalizer of volume "+pv.Name)
	case held && !deleteData:
		// Changed to Retain: the data stays, nothing holds the object.
		return sdk.Result{}, c.dropFinalizer(ctx, pv)
	case pv.DeletionTimestamp != nil && held && pv.Status.Phase != v1.VolumeBound:
		// Deleted by hand: a bound volume waits for its claim to go (its
		// pods may still write there); then the data goes first.
		if err := c.removeDirectory(ctx, pv); err != nil {
			return sdk.Result{}, err
		}
		return sdk.Result{}, c.dropFinalizer(ctx, pv)
	}
	return sdk.Result{}, nil
}

// removeDirectory asks the agent of the volume's node to remove its
// directory. A node that no longer exists cannot: the volume is let go
// with a warning (its disk, if it comes back, keeps the directory), which
// is the way out for claims whose node died.
func (c *controller) removeDirectory(ctx context.Context, pv *v1.PersistentVolume) error {
	nodeName := pv.Annotations[localstorage.NodeAnnotation]
	if nodeName == "" {
		err := fmt.Errorf("volume %s has no %s annotation: the node holding its directory is unknown", pv.Name, localstorage.NodeAnnotation)
		c.events.Event(pv, v1.EventTypeWarning, reasonVolumeFailedDelete, err.Error())
		return sdk.TerminalError(err)
	}
	node, err := c.nodes.Get(nodeName)
	if apierrors.IsNotFound(err) {
		msg := fmt.Sprintf("node %q no longer exists: the directory %s could not be removed and is left on that machine", nodeName, pathOf(pv))
		c.events.Event(pv, v1.EventTypeWarning, reasonVolumeFailedDelete, msg)
		c.logger.Warn("releasing a volume whose node is gone", "volume", pv.Name, "node", nodeName, "path", pathOf(pv))
		return nil
	}
	if err != nil {
		return err
	}
	if err := c.storage.RemoveVolume(ctx, node, pv.Name); err != nil {
		c.events.Event(pv, v1.EventTypeWarning, reasonVolumeFailedDelete, err.Error())
		return err
	}
	c.logger.Info("removed the directory of a deleted volume", "volume", pv.Name, "node", nodeName, "path", pathOf(pv))
	return nil
}

func pathOf(pv *v1.PersistentVolume) string {
	if pv.Spec.Local != nil {
		return pv.Spec.Local.Path
	}
	return ""
}

func (c *controller) dropFinalizer(ctx context.Context, pv *v1.PersistentVolume) error {
	if !slices.Contains(pv.Finalizers, finalizer) {
		return nil
	}
	clone := pv.DeepCopy()
	clone.Finalizers = slices.DeleteFunc(clone.Finalizers, func(f string) bool { return f == finalizer })
	_, err := c.client.CoreV1().PersistentVolumes().Update(ctx, clone, metav1.UpdateOptions{})
	return ignoreNotFound(err, "removing the finalizer of volume "+pv.Name)
}

// deleteVolume deletes the volume object, only the one that was read.
func (c *controller) deleteVolume(ctx context.Context, pv *v1.PersistentVolume) error {
	uid := pv.UID
	err := c.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	return ignoreNotFound(err, "deleting volume "+pv.Name)
}

func ignoreNotFound(err error, what string) error {
	if err == nil || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
