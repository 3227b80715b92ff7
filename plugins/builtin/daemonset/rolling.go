package daemonset

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/keelson/keelson/plugins/builtin/internal/history"
	"github.com/keelson/keelson/plugins/builtin/internal/pods"
)

// budgets resolves maxSurge and maxUnavailable against the nodes that
// should run the daemon (rounded up, as upstream); with both zero, one
// node at a time is unavailable.
func budgets(ds *appsv1.DaemonSet, desired int) (maxSurge, maxUnav int) {
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ru == nil {
		return 0, 1
	}
	if ru.MaxSurge != nil {
		maxSurge, _ = intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, desired, true)
	}
	maxUnav = 1
	if ru.MaxUnavailable != nil {
		maxUnav, _ = intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, desired, true)
	}
	if maxSurge == 0 && maxUnav == 0 {
		maxUnav = 1
	}
	return maxSurge, maxUnav
}

func surge(ds *appsv1.DaemonSet, desired int) int {
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType {
		return 0
	}
	s, _ := budgets(ds, desired)
	return s
}

// updatedPods splits a node's live daemon pods into the one at hash and the
// old one; ok is false with more than one of either (manage resolves it).
func updatedPods(ps []*v1.Pod, hash string) (cur, old *v1.Pod, ok bool) {
	for _, p := range ps {
		if p.DeletionTimestamp != nil {
			continue
		}
		if p.Labels[history.HashLabel] == hash {
			if cur != nil {
				return nil, nil, false
			}
			cur = p
		} else {
			if old != nil {
				return nil, nil, false
			}
			old = p
		}
	}
	return cur, old, true
}

// rollingUpdate returns the old pods to delete and the nodes to give a new
// pod now. Without surge, old pods are deleted (unavailable ones first)
// while at most maxUnavailable nodes lack an available daemon; with surge,
// a new pod starts beside the old one on up to maxSurge nodes and the old
// one goes once the new one is available.
func (c *controller) rollingUpdate(ds *appsv1.DaemonSet, nodes []*v1.Node, byNode map[string][]*v1.Pod, hash string) (creates []string, deletes []*v1.Pod) {
	now := c.clock.Now()
	minReady := ds.Spec.MinReadySeconds
	var desired []string
	for _, node := range nodes {
		if run, _ := shouldRun(ds, node); run {
			desired = append(desired, node.Name)
		}
	}
	maxSurge, maxUnav := budgets(ds, len(desired))
	if maxSurge == 0 {
		unavailable := 0
		var candidates []*v1.Pod
		for _, name := range desired {
			cur, old, ok := updatedPods(byNode[name], hash)
			switch {
			case !ok, cur == nil && old == nil, cur != nil && old != nil:
				unavailable++
			case cur != nil:
				if !isAvailable(cur, minReady, now) {
					unavailable++
				}
			case !isAvailable(old, minReady, now):
				deletes = append(deletes, old) // already down: replace at once
			default:
				candidates = append(candidates, old)
			}
		}
		n := max(0, min(maxUnav-unavailable-len(deletes), len(candidates)))
		return nil, append(deletes, candidates[:n]...)
	}
	surging := 0
	var candidates []string
	for _, name := range desired {
		cur, old, ok := updatedPods(byNode[name], hash)
		switch {
		case !ok || old == nil:
		case cur == nil && !isAvailable(old, minReady, now):
			creates = append(creates, name)
		case cur == nil:
			candidates = append(candidates, name)
		case isAvailable(cur, minReady, now):
			deletes = append(deletes, old)
		default:
			surging++
		}
	}
	n := max(0, min(maxSurge-surging, len(candidates)))
	return append(creates, candidates[:n]...), deletes
}

// computeStatus counts, over the nodes, as upstream: the oldest daemon pod
// on each node that should run one decides ready, available and updated.
func computeStatus(ds *appsv1.DaemonSet, nodes []*v1.Node, byNode map[string][]*v1.Pod, hash string, cc int32, now time.Time) appsv1.DaemonSetStatus {
	st := appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, CollisionCount: &cc, Conditions: ds.Status.Conditions}
	for _, node := range nodes {
		run, _ := shouldRun(ds, node)
		ps := byNode[node.Name]
		if !run {
			if len(ps) > 0 {
				st.NumberMisscheduled++
			}
			continue
		}
		st.DesiredNumberScheduled++
		if len(ps) == 0 {
			continue
		}
		st.CurrentNumberScheduled++
		oldest := ps[0]
		for _, p := range ps[1:] {
			if p.CreationTimestamp.Before(&oldest.CreationTimestamp) {
				oldest = p
			}
		}
		if pods.IsReady(oldest) {
			st.NumberReady++
			if pods.IsAvailable(oldest, ds.Spec.MinReadySeconds, now) {
				st.NumberAvailable++
			}
		}
		if oldest.Labels[history.HashLabel] == hash {
			st.UpdatedNumberScheduled++
		}
	}
	st.NumberUnavailable = st.DesiredNumberScheduled - st.NumberAvailable
	return st
}

func (c *controller) writeStatus(ctx context.Context, ds *appsv1.DaemonSet, st appsv1.DaemonSetStatus) error {
	old := ds.Status
	if old.ObservedGeneration == st.ObservedGeneration && old.DesiredNumberScheduled == st.DesiredNumberScheduled &&
		old.CurrentNumberScheduled == st.CurrentNumberScheduled && old.NumberMisscheduled == st.NumberMisscheduled &&
		old.NumberReady == st.NumberReady && old.NumberAvailable == st.NumberAvailable &&
		old.UpdatedNumberScheduled == st.UpdatedNumberScheduled && old.NumberUnavailable == st.NumberUnavailable &&
		old.CollisionCount != nil && *old.CollisionCount == *st.CollisionCount {
		return nil
	}
	upd := ds.DeepCopy()
	upd.Status = st
	out, err := c.client.AppsV1().DaemonSets(ds.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("updating status of daemonset %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	if err == nil {
		c.fresh.WroteFor(out, setsCache, out.ResourceVersion)
	}
	return nil
}

// parallel runs f(0..n-1) concurrently and returns the errors.
func parallel(n int, f func(i int) error) []error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := f(i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}
