package statefulset

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/plugins/builtin/internal/pods"
)

// computeStatus counts members as upstream does: replicas are created pods
// (terminating ones too), current and updated ones exclude terminating
// pods. A rolling update whose pods are all updated and ready makes the
// update revision current.
func computeStatus(set *appsv1.StatefulSet, revs *revisions, members []*v1.Pod, now time.Time) appsv1.StatefulSetStatus {
	cc := revs.collisionCount
	st := appsv1.StatefulSetStatus{
		ObservedGeneration: set.Generation,
		CurrentRevision:    revs.current.Name,
		UpdateRevision:     revs.update.Name,
		CollisionCount:     &cc,
	}
	for _, p := range members {
		if isCreated(p) {
			st.Replicas++
		}
		if isRunningAndReady(p) {
			st.ReadyReplicas++
			if isRunningAndAvailable(p, set.Spec.MinReadySeconds, now) {
				st.AvailableReplicas++
			}
		}
		if isCreated(p) && !isTerminating(p) {
			switch revisionOf(p) {
			case revs.current.Name:
				st.CurrentReplicas++
			}
			if revisionOf(p) == revs.update.Name {
				st.UpdatedReplicas++
			}
		}
	}
	if set.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType &&
		st.UpdatedReplicas == st.Replicas && st.ReadyReplicas == st.Replicas {
		st.CurrentReplicas = st.UpdatedReplicas
		st.CurrentRevision = st.UpdateRevision
	}
	return st
}

// availabilityWait is how long until the next ready member becomes
// available (0 if none is waiting).
func availabilityWait(set *appsv1.StatefulSet, members []*v1.Pod, now time.Time) time.Duration {
	if set.Spec.MinReadySeconds <= 0 {
		return 0
	}
	if d := pods.NextAvailabilityCheck(members, set.Spec.MinReadySeconds, now, now); d != nil {
		return *d + time.Second/10
	}
	return 0
}
