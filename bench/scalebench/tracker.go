package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// loadLabel marks every object of the load.
const loadLabel = "scalebench"

// podTimes is what the tracker saw of one pod, by its watch's clock.
type podTimes struct {
	seen, scheduled, running time.Time
	live, isRunning          bool
}

// tracker watches the load's pods and records, per pod, when the watch
// first saw it (its creation), when it had a node and when it was Running
// as kwok reports it.
type tracker struct {
	mu   sync.Mutex
	pods map[types.UID]*podTimes
	now  func() time.Time
}

func newTracker() *tracker { return &tracker{pods: map[types.UID]*podTimes{}, now: time.Now} }

// run watches pods labelled loadLabel until ctx is done; it returns once
// the informer's first list is in.
func (t *tracker) run(ctx context.Context, cs kubernetes.Interface) error {
	lw := cache.NewFilteredListWatchFromClient(cs.CoreV1().RESTClient(), "pods", metav1.NamespaceAll,
		func(o *metav1.ListOptions) { o.LabelSelector = loadLabel })
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { t.observe(o, false) },
		UpdateFunc: func(_, o any) { t.observe(o, false) },
		DeleteFunc: func(o any) { t.observe(o, true) },
	}); err != nil {
		return err
	}
	go inf.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("pod watch did not sync: %w", ctx.Err())
	}
	return nil
}

func (t *tracker) observe(o any, deleted bool) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pods[pod.UID]
	if p == nil {
		p = &podTimes{seen: now}
		t.pods[pod.UID] = p
	}
	p.live = !deleted
	if pod.Spec.NodeName != "" && p.scheduled.IsZero() {
		p.scheduled = now
	}
	p.isRunning = pod.Status.Phase == corev1.PodRunning && pod.DeletionTimestamp == nil
	if p.isRunning && p.running.IsZero() {
		p.running = now
	}
}

// counts is the number of live pods and of those Running.
func (t *tracker) counts() (live, running int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.pods {
		if p.live {
			live++
			if p.isRunning {
				running++
			}
		}
	}
	return live, running
}

// startups are the latencies of the pods first seen in [from, to) that
// reached Running: seen to Running (pod startup), and its two parts, seen
// to bound and bound to Running (clusterloader2's create_to_schedule and
// schedule_to_run). A pod seen already bound counts zero for the first.
func (t *tracker) startups(from, to time.Time) (total, toBound, toRunning []time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.pods {
		if p.seen.Before(from) || !p.seen.Before(to) || p.running.IsZero() {
			continue
		}
		total = append(total, p.running.Sub(p.seen))
		bound := p.scheduled
		if bound.IsZero() || bound.After(p.running) {
			bound = p.running // Running in the first event that showed a node
		}
		toBound = append(toBound, bound.Sub(p.seen))
		toRunning = append(toRunning, p.running.Sub(bound))
	}
	return total, toBound, toRunning
}

// binds are the times pods got a node in [from, to).
func (t *tracker) binds(from, to time.Time) []time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []time.Time
	for _, p := range t.pods {
		if !p.scheduled.IsZero() && !p.scheduled.Before(from) && p.scheduled.Before(to) {
			out = append(out, p.scheduled)
		}
	}
	return out
}
