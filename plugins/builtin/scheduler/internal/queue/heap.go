package queue

import (
	"maps"
	"reflect"

	v1 "k8s.io/api/core/v1"
)

// podHeap is a container/heap of queued pods that keeps each pod's index,
// so a pod can be removed or re-sorted in place.
type podHeap struct {
	items []*QueuedPod
	less  func(a, b *QueuedPod) bool
}

func (h *podHeap) Len() int           { return len(h.items) }
func (h *podHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }

func (h *podHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].index = i
	h.items[j].index = j
}

func (h *podHeap) Push(x any) {
	qp := x.(*QueuedPod)
	qp.index = len(h.items)
	h.items = append(h.items, qp)
}

func (h *podHeap) Pop() any {
	last := len(h.items) - 1
	qp := h.items[last]
	h.items[last] = nil
	h.items = h.items[:last]
	qp.index = -1
	return qp
}

// schedulingChanged reports whether an update of a pending pod may change
// where it fits: its labels (affinity and spread of other pods select on
// them) or its spec. Status and metadata bookkeeping (the scheduler's own
// condition updates) do not count.
func schedulingChanged(old, cur *v1.Pod) bool {
	if !maps.Equal(old.Labels, cur.Labels) {
		return true
	}
	return !reflect.DeepEqual(&old.Spec, &cur.Spec)
}
