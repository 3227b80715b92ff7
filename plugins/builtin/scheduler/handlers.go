package scheduler

import (
	"context"
	"maps"
	"reflect"
	"sync"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/placement"
	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/queue"
)

// inbox carries what informers and API goroutines report to the loop. It
// never blocks a sender: informer handlers must return promptly.
type inbox struct {
	mu     sync.Mutex
	items  []any
	signal chan struct{}
}

func newInbox() inbox { return inbox{signal: make(chan struct{}, 1)} }

func (b *inbox) push(item any) {
	b.mu.Lock()
	b.items = append(b.items, item)
	b.mu.Unlock()
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

// take returns the pending items and gives buf (emptied) back for the next
// batch, so steady state allocates nothing.
func (b *inbox) take(buf []any) []any {
	b.mu.Lock()
	items := b.items
	b.items = buf[:0]
	b.mu.Unlock()
	return items
}

// The items the inbox carries.
type (
	podEvent struct {
		old, cur *v1.Pod
		deleted  bool
	}
	nodeEvent struct {
		old, cur *v1.Node
		deleted  bool
	}
	// moveEvent reports a change of objects that some filters read
	// through listers (claims, volumes, classes, namespaces).
	moveEvent  struct{ filters placement.FilterSet }
	bindResult struct {
		qp   *queue.QueuedPod
		node string
		err  error
	}
	// activate asks to retry a pod now (its preemption failed).
	activate struct{ pod *v1.Pod }
)

// Filters whose verdict can change when a bound pod goes away (freeing
// resources and ports, lifting anti-affinity, rebalancing spread) or
// arrives or changes labels (satisfying affinity, rebalancing spread).
var (
	podRemovedFilters = placement.FilterSet(0).With(placement.FilterNodeResourcesFit).With(placement.FilterNodePorts).
				With(placement.FilterInterPodAffinity).With(placement.FilterPodTopologySpread)
	podAddedFilters = placement.FilterSet(0).With(placement.FilterInterPodAffinity).With(placement.FilterPodTopologySpread)
	allFilters      = ^placement.FilterSet(0)
	volumeFilters   = placement.FilterSet(0).With(placement.FilterVolumeBinding).With(placement.FilterVolumeZone)
)

func (s *Scheduler) processInbox(ctx context.Context) {
	var buf []any
	for {
		items := s.inbox.take(buf)
		if len(items) == 0 {
			return
		}
		for i, item := range items {
			s.apply(ctx, item)
			items[i] = nil
		}
		buf = items
	}
}

func (s *Scheduler) apply(ctx context.Context, item any) {
	switch e := item.(type) {
	case podEvent:
		s.onPod(e)
	case nodeEvent:
		s.onNode(e)
	case moveEvent:
		s.queue.Move(e.filters, nil)
	case bindResult:
		s.onBindResult(ctx, e)
	case activate:
		s.queue.Activate(e.pod.UID)
	}
}

func (s *Scheduler) onPod(e podEvent) {
	pod := e.cur
	switch {
	case e.deleted:
		s.queue.Delete(pod.UID)
		s.nominator.remove(pod.UID)
		if node := s.cache.RemovePod(pod.UID); node != "" {
			s.queue.Move(podRemovedFilters, nil)
		}
	case pod.Spec.NodeName != "":
		s.queue.Delete(pod.UID)
		s.nominator.remove(pod.UID)
		confirmsAssumed := s.cache.IsAssumed(pod.UID)
		s.cache.SetPod(pod)
		switch {
		case confirmsAssumed:
		case e.old == nil || e.old.Spec.NodeName == "":
			s.queue.Move(podAddedFilters, nil)
		case !maps.Equal(e.old.Labels, pod.Labels):
			s.queue.Move(podAddedFilters, nil)
		case pod.DeletionTimestamp != nil && e.old.DeletionTimestamp == nil:
			// A terminating pod stops counting for spread.
			s.queue.Move(podRemovedFilters, nil)
		}
	case !s.responsible(pod) || pod.DeletionTimestamp != nil:
		s.queue.Delete(pod.UID)
		s.nominator.remove(pod.UID)
	case s.cache.IsAssumed(pod.UID):
		// Its binding is in flight; the bound version will confirm it.
	default:
		pi := cluster.NewPodInfo(pod)
		s.queue.Add(pi)
		if nnn := pod.Status.NominatedNodeName; nnn != "" {
			s.nominator.add(pi, nnn)
		} else if _, ok := s.nominator.nodeOf[pod.UID]; ok {
			// Keep the in-memory nomination (its status update may
			// not be visible yet) with the newer pod object.
			s.nominator.add(pi, s.nominator.nodeOf[pod.UID])
		}
	}
}

func (s *Scheduler) onNode(e nodeEvent) {
	switch {
	case e.deleted:
		s.cache.RemoveNode(e.cur.Name)
	case e.old == nil:
		s.cache.SetNode(e.cur)
		s.queue.Move(allFilters, nil)
	default:
		s.cache.SetNode(e.cur)
		if f := nodeChangeFilters(e.old, e.cur); f != 0 {
			s.queue.Move(f, nil)
		}
	}
}

// nodeChangeFilters returns the filters whose verdict a node update may
// change; heartbeats and other status churn change none.
func nodeChangeFilters(old, cur *v1.Node) placement.FilterSet {
	var f placement.FilterSet
	if !apiequality.Semantic.DeepEqual(old.Status.Allocatable, cur.Status.Allocatable) {
		f = f.With(placement.FilterNodeResourcesFit)
	}
	if !maps.Equal(old.Labels, cur.Labels) {
		f = f.With(placement.FilterNodeAffinity).With(placement.FilterPodTopologySpread).
			With(placement.FilterInterPodAffinity).With(placement.FilterVolumeBinding).With(placement.FilterVolumeZone)
	}
	if !reflect.DeepEqual(old.Spec.Taints, cur.Spec.Taints) || !sameConditionStatus(old, cur) {
		f = f.With(placement.FilterTaintToleration)
	}
	if old.Spec.Unschedulable != cur.Spec.Unschedulable {
		f = f.With(placement.FilterNodeUnschedulable)
	}
	return f
}

func sameConditionStatus(a, b *v1.Node) bool {
	if len(a.Status.Conditions) != len(b.Status.Conditions) {
		return false
	}
	for i := range a.Status.Conditions {
		ca, cb := &a.Status.Conditions[i], &b.Status.Conditions[i]
		if ca.Type != cb.Type || ca.Status != cb.Status {
			return false
		}
	}
	return true
}

// podHandlers and nodeHandlers turn informer notifications into inbox
// items.
func (s *Scheduler) podHandlers() cache.ResourceEventHandlerFuncs {
	return handlers(func(old, cur *v1.Pod, deleted bool) { s.inbox.push(podEvent{old: old, cur: cur, deleted: deleted}) })
}

func (s *Scheduler) nodeHandlers() cache.ResourceEventHandlerFuncs {
	return handlers(func(old, cur *v1.Node, deleted bool) { s.inbox.push(nodeEvent{old: old, cur: cur, deleted: deleted}) })
}

// handlers calls push with typed objects: (nil, new) on add, (old, new) on
// update, (nil, last known) on delete, unwrapping tombstones.
func handlers[T any](push func(old, cur T, deleted bool)) cache.ResourceEventHandlerFuncs {
	var none T
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if o, ok := obj.(T); ok {
				push(none, o, false)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(T)
			n, ok2 := newObj.(T)
			if ok1 && ok2 {
				push(o, n, false)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if o, ok := obj.(T); ok {
				push(none, o, true)
			}
		},
	}
}

// moveHandlers retries pods rejected by filters when objects those filters
// read change.
func (s *Scheduler) moveHandlers(filters placement.FilterSet) cache.ResourceEventHandlerFuncs {
	push := func() { s.inbox.push(moveEvent{filters: filters}) }
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { push() },
		UpdateFunc: func(any, any) { push() },
	}
}
