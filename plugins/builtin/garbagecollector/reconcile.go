package garbagecollector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/plugins/sdk"
)

// notSyncedRetry is when a step that needs complete caches looks again.
const notSyncedRetry = time.Second

// ownerIdentity is where an owner reference points: the resource, the
// namespace (empty for cluster-scoped kinds), the name and the UID.
type ownerIdentity struct {
	resource  schema.GroupResource
	namespace string
	name      string
	uid       types.UID
}

// errUnknownKind is returned while an owner's kind is not (yet) served:
// a CustomResourceDefinition may be on its way; the item is retried.
var errUnknownKind = errors.New("owner kind is not served (yet)")

func hasFinalizer(m metav1.Object, f string) bool { return slices.Contains(m.GetFinalizers(), f) }

// deletingDependents reports whether m waits for its dependents to go
// (foreground deletion).
func deletingDependents(m metav1.Object) bool {
	return m.GetDeletionTimestamp() != nil && hasFinalizer(m, metav1.FinalizerDeleteDependents)
}

// reconcile takes one step for the object k: finish orphaning or
// foreground deletion if it is being deleted that way, else delete it if
// its owners are gone.
func (gc *collector) reconcile(ctx context.Context, k objectKey) (sdk.Result, error) {
	m := gc.monitors.monitor(k.resource)
	if m == nil {
		return sdk.Result{}, nil // no longer served
	}
	obj, _ := gc.monitors.get(k.resource, k.namespace, k.name)
	if obj == nil || obj.UID != k.uid {
		return sdk.Result{}, nil // gone; a recreated object has its own key
	}
	it := item{res: &m.resource, obj: obj}
	if obj.DeletionTimestamp != nil {
		switch {
		case hasFinalizer(obj, metav1.FinalizerOrphanDependents):
			return gc.orphanDependents(ctx, it)
		case hasFinalizer(obj, metav1.FinalizerDeleteDependents):
			return gc.deleteDependents(ctx, it)
		}
		return sdk.Result{}, nil // being deleted; its deletion event queues its dependents
	}
	if len(obj.OwnerReferences) == 0 {
		return sdk.Result{}, nil
	}
	if gc.ownersSolidInCache(it) {
		return sdk.Result{}, nil
	}
	return sdk.Result{}, gc.collect(ctx, it)
}

// ownersSolidInCache is the cheap check that settles most objects: every
// owner is cached, alive and not waiting for its dependents.
func (gc *collector) ownersSolidInCache(it item) bool {
	for _, ref := range it.obj.OwnerReferences {
		id, err := gc.ownerOf(it, ref)
		if err != nil {
			return false
		}
		owner, _ := gc.monitors.get(id.resource, id.namespace, id.name)
		if owner == nil || owner.UID != ref.UID || owner.DeletionTimestamp != nil {
			return false
		}
	}
	return true
}

// ownerOf resolves where ref points for dependent it.
func (gc *collector) ownerOf(it item, ref metav1.OwnerReference) (ownerIdentity, error) {
	r, ok := gc.monitors.kindOf(ref.APIVersion, ref.Kind)
	if !ok {
		return ownerIdentity{}, fmt.Errorf("%s %s of %s: %w", ref.APIVersion, ref.Kind, describe(it), errUnknownKind)
	}
	id := ownerIdentity{resource: r.gvr.GroupResource(), name: ref.Name, uid: ref.UID}
	if r.namespaced {
		id.namespace = it.obj.Namespace
	}
	return id, nil
}

func describe(it item) string {
	if it.obj.Namespace == "" {
		return it.res.gvr.Resource + " " + it.obj.Name
	}
	return it.res.gvr.Resource + " " + it.obj.Namespace + "/" + it.obj.Name
}

// owners sorts an object's owner references by the state of the owner.
type owners struct {
	solid, dangling, waiting []metav1.OwnerReference
	// invalid are references a cluster-scoped object makes to namespaced
	// kinds; they can never resolve.
	invalid []metav1.OwnerReference
}

// collect deletes it, or drops its references to owners that are gone or
// waiting for their dependents while another owner remains, after checking
// the live object and every owner it is not sure about.
func (gc *collector) collect(ctx context.Context, it item) error {
	latest, err := gc.getLive(ctx, it.res, it.obj.Namespace, it.obj.Name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if latest.UID != it.obj.UID || latest.DeletionTimestamp != nil || len(latest.OwnerReferences) == 0 {
		return nil
	}
	it = item{res: it.res, obj: latest}
	o, err := gc.classify(ctx, it)
	if err != nil {
		return err
	}
	switch {
	case len(o.invalid) > 0:
		// Upstream leaves such an object alone for good: its owners can
		// never be verified.
		return nil
	case len(o.solid) > 0:
		if len(o.dangling) == 0 && len(o.waiting) == 0 {
			return nil
		}
		drop := append(uids(o.dangling), uids(o.waiting)...)
		gc.logger.Info("removing references to owners that are gone or being deleted",
			"object", describe(it), "owners", drop)
		return gc.removeOwnerRefs(ctx, it, drop)
	case len(o.waiting) > 0 && len(gc.monitors.dependents(latest.UID)) > 0:
		// An owner is deleting its dependents in the foreground, and this
		// dependent has dependents of its own: it goes the same way.
		if gc.inCycle(latest.UID) {
			if err := gc.unblockOwnerRefs(ctx, it); err != nil {
				return err
			}
		}
		gc.logger.Info("deleting object in the foreground, its owner waits for it", "object", describe(it))
		return gc.deleteLive(ctx, it, metav1.DeletePropagationForeground)
	default:
		policy := metav1.DeletePropagationBackground
		switch {
		case hasFinalizer(latest, metav1.FinalizerOrphanDependents):
			policy = metav1.DeletePropagationOrphan
		case hasFinalizer(latest, metav1.FinalizerDeleteDependents):
			policy = metav1.DeletePropagationForeground
		}
		gc.logger.Info("deleting object whose owners are gone", "object", describe(it), "propagation", policy)
		return gc.deleteLive(ctx, it, policy)
	}
}

// inCycle reports whether a dependent of uid is itself waiting for its
// dependents, which, with uid's owner waiting for uid, may be a cycle
// that blocking references would deadlock.
func (gc *collector) inCycle(uid types.UID) bool {
	for _, d := range gc.monitors.dependents(uid) {
		if deletingDependents(d.obj) {
			return true
		}
	}
	return false
}

func uids(refs []metav1.OwnerReference) []types.UID {
	out := make([]types.UID, len(refs))
	for i, r := range refs {
		out[i] = r.UID
	}
	return out
}

// classify looks every owner of it up: in the cache, else (or to confirm
// it is gone) at the API server.
func (gc *collector) classify(ctx context.Context, it item) (owners, error) {
	var o owners
	for _, ref := range it.obj.OwnerReferences {
		id, err := gc.ownerOf(it, ref)
		if err != nil {
			return o, err
		}
		r, _ := gc.monitors.kindOf(ref.APIVersion, ref.Kind)
		if it.obj.Namespace == "" && r.namespaced {
			gc.reportInvalidNamespace(it, ref)
			o.invalid = append(o.invalid, ref)
			continue
		}
		owner, err := gc.findOwner(ctx, r, id)
		if err != nil {
			return o, err
		}
		switch {
		case owner == nil:
			gc.reportInvalidNamespace(it, ref)
			o.dangling = append(o.dangling, ref)
		case deletingDependents(owner):
			o.waiting = append(o.waiting, ref)
		default:
			o.solid = append(o.solid, ref)
		}
	}
	return o, nil
}

// findOwner returns the owner id, or nil if it does not exist (with that
// UID, in that namespace).
func (gc *collector) findOwner(ctx context.Context, r *resource, id ownerIdentity) (*metav1.PartialObjectMetadata, error) {
	if _, gone := gc.absent.Get(id); gone {
		return nil, nil
	}
	if owner, _ := gc.monitors.get(id.resource, id.namespace, id.name); owner != nil && owner.UID == id.uid {
		return owner, nil
	}
	owner, err := gc.getLive(ctx, r, id.namespace, id.name)
	switch {
	case apierrors.IsNotFound(err):
		gc.absent.Add(id, struct{}{})
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("looking up owner %s %s/%s: %w", id.resource, id.namespace, id.name, err)
	case owner.UID != id.uid:
		gc.absent.Add(id, struct{}{})
		return nil, nil
	}
	return owner, nil
}

// reportInvalidNamespace records a warning on it when ref's UID belongs to
// an object it cannot own: a namespaced object in another namespace.
func (gc *collector) reportInvalidNamespace(it item, ref metav1.OwnerReference) {
	for _, o := range gc.monitors.withUID(ref.UID) {
		if o.obj.Namespace == "" || o.obj.Namespace == it.obj.Namespace {
			continue
		}
		gc.recorder.Eventf(&corev1.ObjectReference{
			APIVersion: it.res.gvr.GroupVersion().String(), Kind: it.res.kind,
			Namespace: it.obj.Namespace, Name: it.obj.Name, UID: it.obj.UID,
		}, corev1.EventTypeWarning, "OwnerRefInvalidNamespace",
			"ownerRef [%s/%s, namespace: %s, name: %s, uid: %s] does not exist in namespace %q",
			ref.APIVersion, ref.Kind, it.obj.Namespace, ref.Name, ref.UID, it.obj.Namespace)
		return
	}
}

// orphanDependents removes owner's references from all its dependents,
// then the orphan finalizer from owner, which lets its deletion finish.
func (gc *collector) orphanDependents(ctx context.Context, owner item) (sdk.Result, error) {
	if !gc.monitors.synced(syncPatience) {
		return sdk.Result{RequeueAfter: notSyncedRetry}, nil
	}
	var errs []error
	for _, d := range gc.monitors.dependents(owner.obj.UID) {
		if err := gc.removeOwnerRefs(ctx, d, []types.UID{owner.obj.UID}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("orphaning %s: %w", describe(d), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return sdk.Result{}, err
	}
	gc.logger.Info("orphaned dependents", "owner", describe(owner))
	return sdk.Result{}, gc.removeFinalizer(ctx, owner, metav1.FinalizerOrphanDependents)
}

// deleteDependents is one step of a foreground deletion: once no
// dependent blocks owner's deletion, the foregroundDeletion finalizer
// goes; until then the dependents are queued to be deleted.
func (gc *collector) deleteDependents(ctx context.Context, owner item) (sdk.Result, error) {
	if !gc.monitors.synced(syncPatience) {
		return sdk.Result{RequeueAfter: notSyncedRetry}, nil
	}
	blocking := 0
	for _, d := range gc.monitors.dependents(owner.obj.UID) {
		for _, ref := range d.obj.OwnerReferences {
			if ref.UID == owner.obj.UID && ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion {
				blocking++
				if !deletingDependents(d.obj) {
					gc.enqueue(d.res, d.obj)
				}
			}
		}
	}
	if blocking > 0 {
		return sdk.Result{}, nil // each dependent's deletion queues the owner again
	}
	gc.logger.Info("dependents deleted; finishing foreground deletion", "owner", describe(owner))
	return sdk.Result{}, gc.removeFinalizer(ctx, owner, metav1.FinalizerDeleteDependents)
}
