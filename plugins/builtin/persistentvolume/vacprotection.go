package persistentvolume

import (
	"context"
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/builtin/internal/tombstone"
	"github.com/keelson/keelson/plugins/sdk"
)

// vacProtectionFinalizer is what kube-apiserver's
// StorageObjectInUseProtection admission puts on every
// VolumeAttributesClass: the class stays while a claim or a volume names it.
const vacProtectionFinalizer = "kubernetes.io/vac-protection"

// byVAC indexes claims and volumes by the VolumeAttributesClasses they
// name.
const byVAC = "volumeAttributesClass"

// claimVACs are the classes a claim names: the one it asks for, the one
// in force and the one a modification in progress moves it to.
func claimVACs(claim *v1.PersistentVolumeClaim) []string {
	names := sets.New(ptr.Deref(claim.Spec.VolumeAttributesClassName, ""), ptr.Deref(claim.Status.CurrentVolumeAttributesClassName, ""))
	if m := claim.Status.ModifyVolumeStatus; m != nil {
		names.Insert(m.TargetVolumeAttributesClassName)
	}
	names.Delete("")
	return sets.List(names)
}

func volumeVACs(pv *v1.PersistentVolume) []string {
	if name := ptr.Deref(pv.Spec.VolumeAttributesClassName, ""); name != "" {
		return []string{name}
	}
	return nil
}

func indexVACs(obj any) ([]string, error) {
	switch o := obj.(type) {
	case *v1.PersistentVolumeClaim:
		return claimVACs(o), nil
	case *v1.PersistentVolume:
		return volumeVACs(o), nil
	}
	return nil, nil
}

// vacHandlers queue a class that needs its finalizer added or may be freed.
func (c *controller) vacHandlers() cache.ResourceEventHandlerFuncs {
	changed := func(obj any) {
		if vac, ok := obj.(*storagev1.VolumeAttributesClass); ok {
			c.vacProtection.Add(vac.Name)
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: changed, UpdateFunc: func(_, obj any) { changed(obj) }}
}

// enqueueFreedVACs queues the classes old named and cur (nil when the
// claim or volume was deleted) no longer names: one being deleted may be
// free now. An update that keeps the names (most: status writes) queues
// nothing.
func (c *controller) enqueueFreedVACs(old, cur any) {
	before, _ := indexVACs(old)
	after, _ := indexVACs(cur)
	for _, name := range before {
		if !slices.Contains(after, name) {
			c.vacProtection.Add(name)
		}
	}
}

// vacWatchers feeds the class queue from the claims' and volumes' events.
func (c *controller) vacWatchers() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		UpdateFunc: c.enqueueFreedVACs,
		DeleteFunc: func(obj any) {
			if claim, ok := tombstone.Object[*v1.PersistentVolumeClaim](obj); ok {
				c.enqueueFreedVACs(claim, nil)
			} else if pv, ok := tombstone.Object[*v1.PersistentVolume](obj); ok {
				c.enqueueFreedVACs(pv, nil)
			}
		},
	}
}

// syncVACProtection is upstream's vac-protection controller: it removes the
// finalizer of a class being deleted once no claim or volume names it, and
// adds it to a class that lacks it (one made before the admission plugin
// ran).
func (c *controller) syncVACProtection(ctx context.Context, name string) (sdk.Result, error) {
	obj, ok, err := c.vacs.GetByKey(name)
	if err != nil || !ok {
		return sdk.Result{}, err
	}
	vac, ok := obj.(*storagev1.VolumeAttributesClass)
	if !ok {
		return sdk.Result{}, nil
	}
	has := slices.Contains(vac.Finalizers, vacProtectionFinalizer)
	var want []string
	switch {
	case vac.DeletionTimestamp != nil && has:
		if used, err := c.vacInUse(name); err != nil || used {
			return sdk.Result{}, err
		}
		want = slices.DeleteFunc(slices.Clone(vac.Finalizers), func(f string) bool { return f == vacProtectionFinalizer })
	case vac.DeletionTimestamp == nil && !has:
		want = append(slices.Clone(vac.Finalizers), vacProtectionFinalizer)
	default:
		return sdk.Result{}, nil
	}
	clone := vac.DeepCopy()
	clone.Finalizers = want
	if _, err := c.client.StorageV1().VolumeAttributesClasses().Update(ctx, clone, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return sdk.Result{}, fmt.Errorf("updating the finalizers of VolumeAttributesClass %s: %w", name, err)
	}
	return sdk.Result{}, nil
}

// vacInUse: a volume or a claim names the class.
func (c *controller) vacInUse(name string) (bool, error) {
	for _, idx := range []cache.Indexer{c.volumes, c.claims} {
		objs, err := idx.ByIndex(byVAC, name)
		if err != nil || len(objs) > 0 {
			return true, err
		}
	}
	c.logger.Info("VolumeAttributesClass is unused; removing its protection finalizer", "volumeAttributesClass", name)
	return false, nil
}
