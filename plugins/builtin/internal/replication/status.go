package replication

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/keelson/keelson/plugins/builtin/internal/pods"
)

// replicasOf is .spec.replicas; the API server defaults it to 1.
func replicasOf(rs *appsv1.ReplicaSet) int32 {
	if rs.Spec.Replicas == nil {
		return 1
	}
	return *rs.Spec.Replicas
}

func secondsDuration(s int32) time.Duration { return time.Duration(s) * time.Second }

// podsToDelete picks n of active to delete, the best candidates first (see
// pods.SortForDeletion); related are the pods of rs's sibling ReplicaSets.
func podsToDelete(active, related []*v1.Pod, n int, now time.Time) []*v1.Pod {
	if n >= len(active) {
		return active
	}
	ranked := slices.Clone(active)
	pods.SortForDeletion(ranked, pods.ColocationRanks(ranked, related), now)
	return ranked[:n]
}

// calculateStatus is rs's status given its active and terminating pods at
// now, with a ReplicaFailure condition while creating or deleting fails.
func calculateStatus(rs *appsv1.ReplicaSet, active, terminating []*v1.Pod, manageErr error, withTerminating bool, now time.Time) appsv1.ReplicaSetStatus {
	st := *rs.Status.DeepCopy()
	templateLabels := labels.Set(rs.Spec.Template.Labels).AsSelectorPreValidated()
	var fullyLabeled, ready, available int32
	for _, p := range active {
		if templateLabels.Matches(labels.Set(p.Labels)) {
			fullyLabeled++
		}
		if pods.IsReady(p) {
			ready++
			if pods.IsAvailable(p, rs.Spec.MinReadySeconds, now) {
				available++
			}
		}
	}
	st.Replicas = int32(len(active))
	st.FullyLabeledReplicas = fullyLabeled
	st.ReadyReplicas = ready
	st.AvailableReplicas = available
	st.TerminatingReplicas = nil
	if withTerminating {
		n := int32(len(terminating))
		st.TerminatingReplicas = &n
	}
	failure := replicaFailure(st.Conditions)
	switch {
	case manageErr != nil && failure == nil:
		reason := ""
		if diff := len(active) - int(replicasOf(rs)); diff < 0 {
			reason = reasonFailedCreate
		} else if diff > 0 {
			reason = reasonFailedDelete
		}
		st.Conditions = append(st.Conditions, appsv1.ReplicaSetCondition{
			Type:               appsv1.ReplicaSetReplicaFailure,
			Status:             v1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(now),
			Reason:             reason,
			Message:            manageErr.Error(),
		})
	case manageErr == nil && failure != nil:
		st.Conditions = slices.DeleteFunc(st.Conditions, func(c appsv1.ReplicaSetCondition) bool {
			return c.Type == appsv1.ReplicaSetReplicaFailure
		})
		if len(st.Conditions) == 0 {
			st.Conditions = nil
		}
	}
	return st
}

func replicaFailure(conds []appsv1.ReplicaSetCondition) *appsv1.ReplicaSetCondition {
	for i := range conds {
		if conds[i].Type == appsv1.ReplicaSetReplicaFailure {
			return &conds[i]
		}
	}
	return nil
}

// statusCurrent reports whether rs already shows st for its generation.
func statusCurrent(rs *appsv1.ReplicaSet, st appsv1.ReplicaSetStatus) bool {
	cur := rs.Status
	return cur.Replicas == st.Replicas &&
		cur.FullyLabeledReplicas == st.FullyLabeledReplicas &&
		cur.ReadyReplicas == st.ReadyReplicas &&
		cur.AvailableReplicas == st.AvailableReplicas &&
		equalPtr(cur.TerminatingReplicas, st.TerminatingReplicas) &&
		rs.Generation == cur.ObservedGeneration &&
		reflect.DeepEqual(cur.Conditions, st.Conditions)
}

func equalPtr(a, b *int32) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// updateStatus writes st as rs's status for rs's generation unless it is
// already there; on a conflict it reads rs afresh and tries once more (a
// later sync retries with backoff).
func (c *Controller) updateStatus(ctx context.Context, key string, rs *appsv1.ReplicaSet, st appsv1.ReplicaSetStatus) (*appsv1.ReplicaSet, error) {
	if statusCurrent(rs, st) {
		return rs, nil
	}
	st.ObservedGeneration = rs.Generation
	cur := rs
	for attempt := 0; ; attempt++ {
		next := cur.DeepCopy()
		next.Status = st
		updated, err := c.kind.UpdateStatus(ctx, c.client, next)
		if err == nil {
			c.fresh.Wrote(key, rs.UID, ownersCache, updated.ResourceVersion)
			return updated, nil
		}
		if attempt == 1 {
			return nil, fmt.Errorf("updating the status of %s: %w", key, err)
		}
		if cur, err = c.kind.Get(ctx, c.client, rs.Namespace, rs.Name); err != nil {
			return nil, fmt.Errorf("re-reading %s to update its status: %w", key, err)
		}
	}
}
