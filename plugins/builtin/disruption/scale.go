package disruption

import (
	"context"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// controllerScale is a controller's UID and spec.replicas.
type controllerScale struct {
	uid      types.UID
	replicas int32
}

// finder returns the controller a pod's controller reference leads to and
// its scale; nil when ref is not of the finder's kind or names no
// (current) object. Deployments count for their ReplicaSets' pods.
type finder func(ctx context.Context, ref *metav1.OwnerReference, namespace string) (*controllerScale, error)

// finders are tried in upstream's order: the cached kinds first, the scale
// subresource for the rest (and for a ReplicaSet whose Deployment is gone).
func (c *controller) finders() []finder {
	return []finder{c.findReplicationController, c.findDeployment, c.findReplicaSet, c.findStatefulSet, c.scales.find}
}

// cached returns the object namespace/name of idx if its UID is uid.
func cached[T metav1.Object](idx cache.Indexer, namespace, name string, uid types.UID) (T, bool) {
	var zero T
	obj, ok, err := idx.GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return zero, false
	}
	o, ok := obj.(T)
	if !ok || o.GetUID() != uid {
		return zero, false
	}
	return o, true
}

// isKind reports whether ref is of kind in one of groups; a malformed
// apiVersion is an error, as upstream.
func isKind(ref *metav1.OwnerReference, kind string, groups ...string) (bool, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return false, err
	}
	return ref.Kind == kind && slices.Contains(groups, gv.Group), nil
}

// replicas reads a defaulted spec.replicas (the API server always sets it).
func replicas(r *int32) int32 { return ptr.Deref(r, 1) }

func (c *controller) findReplicationController(_ context.Context, ref *metav1.OwnerReference, ns string) (*controllerScale, error) {
	if ok, err := isKind(ref, "ReplicationController", ""); !ok || err != nil {
		return nil, err
	}
	rc, ok := cached[*v1.ReplicationController](c.rcs, ns, ref.Name, ref.UID)
	if !ok {
		return nil, nil
	}
	return &controllerScale{rc.UID, replicas(rc.Spec.Replicas)}, nil
}

// findDeployment finds the Deployment controlling the ReplicaSet ref.
func (c *controller) findDeployment(_ context.Context, ref *metav1.OwnerReference, ns string) (*controllerScale, error) {
	if ok, err := isKind(ref, "ReplicaSet", "apps", "extensions"); !ok || err != nil {
		return nil, err
	}
	rs, ok := cached[*appsv1.ReplicaSet](c.rss, ns, ref.Name, ref.UID)
	if !ok {
		return nil, nil
	}
	depRef := metav1.GetControllerOfNoCopy(rs)
	if depRef == nil {
		return nil, nil
	}
	if ok, err := isKind(depRef, "Deployment", "apps", "extensions"); !ok || err != nil {
		return nil, err
	}
	d, ok := cached[*appsv1.Deployment](c.deps, ns, depRef.Name, depRef.UID)
	if !ok {
		return nil, nil
	}
	return &controllerScale{d.UID, replicas(d.Spec.Replicas)}, nil
}

// findReplicaSet finds a ReplicaSet that no Deployment controls.
func (c *controller) findReplicaSet(_ context.Context, ref *metav1.OwnerReference, ns string) (*controllerScale, error) {
	if ok, err := isKind(ref, "ReplicaSet", "apps", "extensions"); !ok || err != nil {
		return nil, err
	}
	rs, ok := cached[*appsv1.ReplicaSet](c.rss, ns, ref.Name, ref.UID)
	if !ok {
		return nil, nil
	}
	if depRef := metav1.GetControllerOfNoCopy(rs); depRef != nil && depRef.Kind == "Deployment" {
		return nil, nil
	}
	return &controllerScale{rs.UID, replicas(rs.Spec.Replicas)}, nil
}

func (c *controller) findStatefulSet(_ context.Context, ref *metav1.OwnerReference, ns string) (*controllerScale, error) {
	if ok, err := isKind(ref, "StatefulSet", "apps"); !ok || err != nil {
		return nil, err
	}
	s, ok := cached[*appsv1.StatefulSet](c.sets, ns, ref.Name, ref.UID)
	if !ok {
		return nil, nil
	}
	return &controllerScale{s.UID, replicas(s.Spec.Replicas)}, nil
}

// restMapper is the part of a discovery-backed RESTMapper scaleReader uses.
type restMapper interface {
	RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error)
	Reset()
}

// scaleReader reads the scale of a controller of any kind through its
// /scale subresource.
type scaleReader struct {
	mapper restMapper
	scales scale.ScalesGetter
	// disco is read uncached, to tell a missing object from a kind
	// without a scale subresource.
	disco discovery.ServerResourcesInterface
}

// find is the finder of last resort.
func (r *scaleReader) find(ctx context.Context, ref *metav1.OwnerReference, ns string) (*controllerScale, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, err
	}
	gk := schema.GroupKind{Group: gv.Group, Kind: ref.Kind}
	mapping, err := r.mapper.RESTMapping(gk, gv.Version)
	if meta.IsNoMatchError(err) {
		// The discovery cache predates the kind (a CRD created since).
		r.mapper.Reset()
		mapping, err = r.mapper.RESTMapping(gk, gv.Version)
	}
	if err != nil {
		return nil, err
	}
	gr := mapping.Resource.GroupResource()
	s, err := r.scales.Scales(ns).Get(ctx, gr, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		// Either the object is gone or its kind has no scale subresource.
		has, err := r.implementsScale(mapping.Resource)
		if err != nil {
			return nil, err
		}
		if !has {
			return nil, fmt.Errorf("%s does not implement the scale subresource", gr)
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if s.UID != ref.UID {
		return nil, nil
	}
	return &controllerScale{s.UID, s.Spec.Replicas}, nil
}

// implementsScale reports whether discovery lists a scale subresource
// (of a Scale kind the scale client speaks) for gvr.
func (r *scaleReader) implementsScale(gvr schema.GroupVersionResource) (bool, error) {
	list, err := r.disco.ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	if err != nil {
		return false, err
	}
	versions := scale.NewScaleConverter().ScaleVersions()
	for _, res := range list.APIResources {
		if res.Name != gvr.Resource+"/scale" || res.Kind != "Scale" {
			continue
		}
		if slices.ContainsFunc(versions, func(v schema.GroupVersion) bool { return v.Group == res.Group && v.Version == res.Version }) {
			return true, nil
		}
	}
	return false, nil
}
