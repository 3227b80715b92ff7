// Package ownedpods is the event handling every controller of pods by
// selector and controller reference shares (StatefulSet, DaemonSet): which
// owner a pod or revision event concerns, when an orphan pod may be adopted,
// and the creation and deletion expectations, as upstream's controllers do.
package ownedpods

import (
	"reflect"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/keelson/keelson/plugins/builtin/internal/expectations"
	"github.com/keelson/keelson/plugins/builtin/internal/pods"
	"github.com/keelson/keelson/plugins/builtin/internal/tombstone"
)

// Handlers turns owner, pod and owned-object events into owner keys on
// Queue. T is the owner's type (*appsv1.StatefulSet, say).
type Handlers[T metav1.Object] struct {
	// Kind is the owner's kind, as controller references name it.
	Kind string
	// Owners is the owners' informer store, indexed by namespace.
	Owners cache.Indexer
	Queue  workqueue.TypedRateLimitingInterface[string]
	Exp    *expectations.Store
	// Selector and MinReadySeconds read the owner's spec.
	Selector        func(T) *metav1.LabelSelector
	MinReadySeconds func(T) int32
}

// OwnerEvents handles the owners' own events.
func (h *Handlers[T]) OwnerEvents() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{AddFunc: h.Enqueue, UpdateFunc: func(_, o any) { h.Enqueue(o) }, DeleteFunc: h.deleteOwner}
}

// PodEvents handles the pods' events.
func (h *Handlers[T]) PodEvents() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{AddFunc: h.addPod, UpdateFunc: h.updatePod, DeleteFunc: h.deletePod}
}

// OwnedEvents handles events of other objects the owners control (their
// ControllerRevisions): each queues its controller.
func (h *Handlers[T]) OwnedEvents() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{AddFunc: h.enqueueOwner, UpdateFunc: func(_, o any) { h.enqueueOwner(o) }, DeleteFunc: h.enqueueOwner}
}

// Enqueue queues an owner.
func (h *Handlers[T]) Enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		h.Queue.Add(key)
	}
}

func (h *Handlers[T]) deleteOwner(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		h.Exp.Delete(key)
		h.Queue.Add(key)
	}
}

// OwnerKey returns the key of the cached owner that controls m: the
// controller reference's kind, name and UID must all match.
func (h *Handlers[T]) OwnerKey(m metav1.Object) (string, bool) {
	ref := metav1.GetControllerOfNoCopy(m)
	if ref == nil || ref.Kind != h.Kind {
		return "", false
	}
	key := m.GetNamespace() + "/" + ref.Name
	obj, ok, _ := h.Owners.GetByKey(key)
	if !ok {
		return "", false
	}
	owner, ok := obj.(T)
	if !ok || owner.GetUID() != ref.UID {
		return "", false
	}
	return key, true
}

func (h *Handlers[T]) enqueueOwner(obj any) {
	if m, ok := tombstone.Object[metav1.Object](obj); ok {
		if key, ok := h.OwnerKey(m); ok {
			h.Queue.Add(key)
		}
	}
}

// enqueueSelecting queues the owners whose selector matches an orphan pod,
// which may adopt it.
func (h *Handlers[T]) enqueueSelecting(p *v1.Pod) {
	objs, _ := h.Owners.ByIndex(cache.NamespaceIndex, p.Namespace)
	for _, o := range objs {
		owner, ok := o.(T)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(h.Selector(owner))
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(p.Labels)) {
			h.Enqueue(owner)
		}
	}
}

func (h *Handlers[T]) addPod(obj any) {
	p := obj.(*v1.Pod)
	if p.DeletionTimestamp != nil {
		h.deletePod(p)
		return
	}
	if key, ok := h.OwnerKey(p); ok {
		h.Exp.CreationObserved(key)
		h.Queue.Add(key)
		return
	}
	if metav1.GetControllerOfNoCopy(p) == nil {
		h.enqueueSelecting(p)
	}
}

func (h *Handlers[T]) updatePod(oldObj, newObj any) {
	old, cur := oldObj.(*v1.Pod), newObj.(*v1.Pod)
	if old.ResourceVersion == cur.ResourceVersion {
		return
	}
	if cur.DeletionTimestamp != nil {
		h.deletePod(cur)
		return
	}
	if oldKey, ok := h.OwnerKey(old); ok {
		h.Queue.Add(oldKey) // a changed controller reference concerns both owners
	}
	key, ok := h.OwnerKey(cur)
	if !ok {
		if metav1.GetControllerOfNoCopy(cur) == nil && !reflect.DeepEqual(old.Labels, cur.Labels) {
			h.enqueueSelecting(cur)
		}
		return
	}
	h.Queue.Add(key)
	// minReadySeconds after readiness the pod becomes available: no event
	// marks that moment, so look again then.
	if !pods.IsReady(old) && pods.IsReady(cur) {
		obj, _, _ := h.Owners.GetByKey(key)
		if owner, ok := obj.(T); ok {
			if s := h.MinReadySeconds(owner); s > 0 {
				h.Queue.AddAfter(key, time.Duration(s)*time.Second)
			}
		}
	}
}

func (h *Handlers[T]) deletePod(obj any) {
	p, ok := tombstone.Object[*v1.Pod](obj)
	if !ok {
		return
	}
	if key, ok := h.OwnerKey(p); ok {
		h.Exp.DeletionObserved(key, p.Namespace+"/"+p.Name)
		h.Queue.Add(key)
	}
}

// ByController is the index IndexByController builds.
const ByController = "controller"

// IndexByController indexes pods and revisions by "namespace/controllerUID",
// and the ones without a controller by their namespace alone (orphans an
// owner may adopt).
func IndexByController(obj any) ([]string, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, nil
	}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		return []string{m.GetNamespace() + "/" + string(ref.UID)}, nil
	}
	return []string{m.GetNamespace()}, nil
}
