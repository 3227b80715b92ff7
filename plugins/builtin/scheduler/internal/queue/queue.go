// Package queue orders the pods waiting to be scheduled, as upstream's
// scheduling queue does: an active heap (higher priority first, then
// first come), a backoff heap for pods that recently failed (1 s doubling
// to 10 s by default), and a pool of unschedulable pods that wait for a
// cluster event able to change the verdict of a filter that rejected them,
// or for five minutes at most.
//
// A Queue is owned by the scheduling loop and is not safe for concurrent
// use.
package queue

import (
	"container/heap"
	"time"

	"github.com/jonboulle/clockwork"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/placement"
)

// Config tunes the queue; zero fields take upstream's defaults.
type Config struct {
	InitialBackoff time.Duration // 1 s
	MaxBackoff     time.Duration // 10 s
	// MaxInUnschedulable is how long a pod waits for an event before it
	// is retried anyway (5 min).
	MaxInUnschedulable time.Duration
}

func (c *Config) defaults() {
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.MaxInUnschedulable <= 0 {
		c.MaxInUnschedulable = 5 * time.Minute
	}
}

type location uint8

const (
	inActive location = iota + 1
	inBackoff
	inErrorBackoff
	inUnschedulable
	inGated
)

// QueuedPod is a pending pod with its scheduling history.
type QueuedPod struct {
	Info *cluster.PodInfo
	// Timestamp is when the pod last entered the queue; it orders pods of
	// equal priority and starts the backoff.
	Timestamp time.Time
	// InitialAttempt is when the pod was first tried (zero until then).
	InitialAttempt time.Time
	// Attempts counts scheduling attempts; Failures the consecutive
	// failed ones, which set the backoff.
	Attempts, Failures int
	// Rejectors are the filters that rejected the pod last time; empty
	// when it failed for another reason (an error, no nodes).
	Rejectors placement.FilterSet

	where   location
	index   int // in its heap
	backoff time.Time
}

// Queue holds the pending pods; see the package comment.
type Queue struct {
	cfg     Config
	clock   clockwork.Clock
	pods    map[types.UID]*QueuedPod
	active  podHeap
	backoff podHeap
	// errorBackoff holds pods whose attempt failed with an error: unlike
	// the backoff heap, it is never drained early when the scheduler idles.
	errorBackoff  podHeap
	unschedulable map[types.UID]*QueuedPod
}

// New returns an empty queue.
func New(cfg Config, clock clockwork.Clock) *Queue {
	cfg.defaults()
	return &Queue{
		cfg:           cfg,
		clock:         clock,
		pods:          map[types.UID]*QueuedPod{},
		active:        podHeap{less: byPriority},
		backoff:       podHeap{less: byBackoff},
		errorBackoff:  podHeap{less: byBackoff},
		unschedulable: map[types.UID]*QueuedPod{},
	}
}

func byPriority(a, b *QueuedPod) bool {
	if a.Info.Priority != b.Info.Priority {
		return a.Info.Priority > b.Info.Priority
	}
	return a.Timestamp.Before(b.Timestamp)
}

func byBackoff(a, b *QueuedPod) bool { return a.backoff.Before(b.backoff) }

// Len is the number of pods in the queue.
func (q *Queue) Len() int { return len(q.pods) }

// Counts reports how many pods are active, backing off and unschedulable.
func (q *Queue) Counts() (active, backoff, unschedulable int) {
	return q.active.Len(), q.backoff.Len() + q.errorBackoff.Len(), len(q.unschedulable)
}

// Has reports whether the pod is queued.
func (q *Queue) Has(uid types.UID) bool {
	_, ok := q.pods[uid]
	return ok
}

// Add queues a new pending pod, or updates it if already queued. Pods with
// scheduling gates wait outside the heaps until their gates are removed.
func (q *Queue) Add(pi *cluster.PodInfo) {
	if qp, ok := q.pods[pi.Pod.UID]; ok {
		q.Update(qp, pi)
		return
	}
	qp := &QueuedPod{Info: pi, Timestamp: q.clock.Now()}
	q.pods[pi.Pod.UID] = qp
	if gated(pi.Pod) {
		qp.where = inGated
		return
	}
	q.push(qp, inActive)
}

// Get returns the queued pod, if any.
func (q *Queue) Get(uid types.UID) (*QueuedPod, bool) {
	qp, ok := q.pods[uid]
	return qp, ok
}

// Update replaces a queued pod's object. A change that may make an
// unschedulable or gated pod fit (labels, spec) puts it back in line.
func (q *Queue) Update(qp *QueuedPod, pi *cluster.PodInfo) {
	old := qp.Info.Pod
	qp.Info = pi
	switch qp.where {
	case inGated:
		if !gated(pi.Pod) {
			q.push(qp, inActive)
		}
	case inUnschedulable:
		if schedulingChanged(old, pi.Pod) {
			delete(q.unschedulable, pi.Pod.UID)
			q.requeue(qp)
		}
	case inActive:
		heap.Fix(&q.active, qp.index)
	}
}

// Delete removes a pod from the queue.
func (q *Queue) Delete(uid types.UID) {
	qp, ok := q.pods[uid]
	if !ok {
		return
	}
	q.detach(qp)
	delete(q.pods, uid)
}

func (q *Queue) detach(qp *QueuedPod) {
	switch qp.where {
	case inActive:
		heap.Remove(&q.active, qp.index)
	case inBackoff:
		heap.Remove(&q.backoff, qp.index)
	case inErrorBackoff:
		heap.Remove(&q.errorBackoff, qp.index)
	case inUnschedulable:
		delete(q.unschedulable, qp.Info.Pod.UID)
	}
	qp.where = 0
}

func (q *Queue) push(qp *QueuedPod, where location) {
	qp.where = where
	switch where {
	case inActive:
		heap.Push(&q.active, qp)
	case inBackoff:
		heap.Push(&q.backoff, qp)
	case inErrorBackoff:
		heap.Push(&q.errorBackoff, qp)
	case inUnschedulable:
		q.unschedulable[qp.Info.Pod.UID] = qp
	}
}

// Pop removes and returns the pod to schedule next: the first active pod,
// after moving pods whose backoff ended to the active heap; when no pod is
// active, a pod still backing off goes rather than leaving the scheduler
// idle (upstream's SchedulerPopFromBackoffQ). It returns nil when the queue
// has nothing to schedule.
func (q *Queue) Pop() *QueuedPod {
	now := q.clock.Now()
	q.flushBackoff(now)
	var qp *QueuedPod
	switch {
	case q.active.Len() > 0:
		qp = heap.Pop(&q.active).(*QueuedPod)
	case q.backoff.Len() > 0:
		qp = heap.Pop(&q.backoff).(*QueuedPod)
	default:
		return nil
	}
	qp.where = 0
	delete(q.pods, qp.Info.Pod.UID)
	qp.Attempts++
	if qp.InitialAttempt.IsZero() {
		qp.InitialAttempt = now
	}
	return qp
}

func (q *Queue) flushBackoff(now time.Time) {
	for _, h := range []*podHeap{&q.backoff, &q.errorBackoff} {
		for h.Len() > 0 && !h.items[0].backoff.After(now) {
			qp := heap.Pop(h).(*QueuedPod)
			q.push(qp, inActive)
		}
	}
}

// AddUnschedulable puts back a popped pod that no node fits; it waits for
// an event that may change the verdict of one of rejectors.
func (q *Queue) AddUnschedulable(qp *QueuedPod, rejectors placement.FilterSet) {
	q.fail(qp)
	qp.Rejectors = rejectors
	q.pods[qp.Info.Pod.UID] = qp
	q.push(qp, inUnschedulable)
}

// AddBackoff puts back a popped pod whose attempt failed for a reason that
// retrying may fix (an API error); it is retried after its backoff.
func (q *Queue) AddBackoff(qp *QueuedPod) {
	q.fail(qp)
	qp.Rejectors = 0
	q.pods[qp.Info.Pod.UID] = qp
	q.push(qp, inErrorBackoff)
}

func (q *Queue) fail(qp *QueuedPod) {
	qp.Failures++
	qp.Timestamp = q.clock.Now()
	qp.backoff = qp.Timestamp.Add(q.backoffFor(qp.Failures))
}

// backoffFor doubles the initial backoff per consecutive failure, up to
// the maximum.
func (q *Queue) backoffFor(failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := q.cfg.InitialBackoff
	for i := 1; i < failures; i++ {
		if d >= q.cfg.MaxBackoff/2 {
			return q.cfg.MaxBackoff
		}
		d *= 2
	}
	return min(d, q.cfg.MaxBackoff)
}

// requeue sends a pod leaving the unschedulable pool or the gate to the
// backoff heap if its backoff is still running, else to the active heap.
func (q *Queue) requeue(qp *QueuedPod) {
	if qp.backoff.After(q.clock.Now()) {
		q.push(qp, inBackoff)
		return
	}
	q.push(qp, inActive)
}

// Move puts back in line the unschedulable pods that a cluster event may
// help: those rejected by a filter in affected (or by none, e.g. "no
// nodes"), and for which match, when given, agrees. It returns how many
// moved.
func (q *Queue) Move(affected placement.FilterSet, match func(*QueuedPod) bool) int {
	moved := 0
	for uid, qp := range q.unschedulable {
		if qp.Rejectors != 0 && qp.Rejectors&affected == 0 {
			continue
		}
		if match != nil && !match(qp) {
			continue
		}
		delete(q.unschedulable, uid)
		q.requeue(qp)
		moved++
	}
	return moved
}

// Activate moves one pod, wherever it waits, to the active heap now (e.g.
// the preemptor once its victims are gone).
func (q *Queue) Activate(uid types.UID) {
	qp, ok := q.pods[uid]
	if !ok || qp.where == inActive || qp.where == inGated {
		return
	}
	q.detach(qp)
	q.push(qp, inActive)
}

// FlushUnschedulable retries the pods that have waited longer than the
// configured maximum for an event.
func (q *Queue) FlushUnschedulable() int {
	now := q.clock.Now()
	moved := 0
	for uid, qp := range q.unschedulable {
		if now.Sub(qp.Timestamp) > q.cfg.MaxInUnschedulable {
			delete(q.unschedulable, uid)
			q.requeue(qp)
			moved++
		}
	}
	return moved
}

// NextBackoff returns when the earliest backoff ends, if any pod backs off.
func (q *Queue) NextBackoff() (time.Time, bool) {
	var next time.Time
	for _, h := range []*podHeap{&q.backoff, &q.errorBackoff} {
		if h.Len() > 0 && (next.IsZero() || h.items[0].backoff.Before(next)) {
			next = h.items[0].backoff
		}
	}
	return next, !next.IsZero()
}

// gated reports whether the pod carries scheduling gates.
func gated(p *v1.Pod) bool { return len(p.Spec.SchedulingGates) > 0 }
