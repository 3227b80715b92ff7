package deployment

import (
	"fmt"
	"math"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// specReplicas is .spec.replicas of a ReplicaSet; nil (which the API server
// never stores) counts as 0.
func specReplicas(rs *appsv1.ReplicaSet) int32 {
	if rs == nil || rs.Spec.Replicas == nil {
		return 0
	}
	return *rs.Spec.Replicas
}

func desired(d *appsv1.Deployment) int32 { return *d.Spec.Replicas }

func isRollingUpdate(d *appsv1.Deployment) bool {
	return d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType
}

// fenceposts resolves maxSurge (rounded up) and maxUnavailable (rounded
// down) against the desired replicas; both zero would deadlock a rollout,
// so maxUnavailable is then 1.
func fenceposts(d *appsv1.Deployment) (surge, unavailable int32, err error) {
	ru := d.Spec.Strategy.RollingUpdate
	zero := intstr.FromInt32(0)
	s, err := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(ru.MaxSurge, zero), int(desired(d)), true)
	if err != nil {
		return 0, 0, fmt.Errorf("spec.strategy.rollingUpdate.maxSurge: %w", err)
	}
	u, err := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(ru.MaxUnavailable, zero), int(desired(d)), false)
	if err != nil {
		return 0, 0, fmt.Errorf("spec.strategy.rollingUpdate.maxUnavailable: %w", err)
	}
	if s == 0 && u == 0 {
		u = 1
	}
	return int32(s), int32(u), nil
}

// maxSurge is how many pods above .spec.replicas a rolling update may run
// (0 for Recreate).
func maxSurge(d *appsv1.Deployment) int32 {
	if !isRollingUpdate(d) {
		return 0
	}
	s, _, _ := fenceposts(d) // validated by the API server; errors resolve to 0
	return s
}

// maxUnavailable is how many of .spec.replicas may be unavailable during a
// rolling update (0 for Recreate), never more than .spec.replicas.
func maxUnavailable(d *appsv1.Deployment) int32 {
	if !isRollingUpdate(d) || desired(d) == 0 {
		return 0
	}
	_, u, _ := fenceposts(d)
	return min(u, desired(d))
}

func hasProgressDeadline(d *appsv1.Deployment) bool {
	return d.Spec.ProgressDeadlineSeconds != nil && *d.Spec.ProgressDeadlineSeconds != math.MaxInt32
}

func hasRevisionHistoryLimit(d *appsv1.Deployment) bool {
	return d.Spec.RevisionHistoryLimit != nil && *d.Spec.RevisionHistoryLimit != math.MaxInt32
}

// Sums over ReplicaSets (nil entries, e.g. a new ReplicaSet not created
// yet, count as zero).

func sumSpecReplicas(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		n += specReplicas(rs)
	}
	return n
}

func sumStatus(rss []*appsv1.ReplicaSet, f func(appsv1.ReplicaSetStatus) int32) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += f(rs.Status)
		}
	}
	return n
}

func statusReplicas(s appsv1.ReplicaSetStatus) int32  { return s.Replicas }
func statusReady(s appsv1.ReplicaSetStatus) int32     { return s.ReadyReplicas }
func statusAvailable(s appsv1.ReplicaSetStatus) int32 { return s.AvailableReplicas }

// sumTerminating adds up terminatingReplicas; nil when any ReplicaSet that
// has been synced does not report it (an older controller), since the
// total would then be wrong.
func sumTerminating(rss []*appsv1.ReplicaSet) *int32 {
	var n int32
	for _, rs := range rss {
		switch {
		case rs == nil:
		case rs.Status.ObservedGeneration == 0 && rs.Status.TerminatingReplicas == nil:
		case rs.Status.TerminatingReplicas == nil:
			return nil
		default:
			n += *rs.Status.TerminatingReplicas
		}
	}
	return &n
}

func activeReplicaSets(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range rss {
		if rs != nil && specReplicas(rs) > 0 {
			out = append(out, rs)
		}
	}
	return out
}

// olderFirst orders ReplicaSets by creation time, then name.
func olderFirst(rss []*appsv1.ReplicaSet) {
	sort.SliceStable(rss, func(i, j int) bool { return createdBefore(rss[i], rss[j]) })
}

func createdBefore(a, b *appsv1.ReplicaSet) bool {
	if a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.Name < b.Name
	}
	return a.CreationTimestamp.Before(&b.CreationTimestamp)
}

// largestFirst orders ReplicaSets by size, larger first; equal sizes
// older first (newer first when newerFirst).
func largestFirst(rss []*appsv1.ReplicaSet, newerFirst bool) {
	sort.SliceStable(rss, func(i, j int) bool {
		if si, sj := specReplicas(rss[i]), specReplicas(rss[j]); si != sj {
			return si > sj
		}
		if newerFirst {
			return createdBefore(rss[j], rss[i])
		}
		return createdBefore(rss[i], rss[j])
	})
}
