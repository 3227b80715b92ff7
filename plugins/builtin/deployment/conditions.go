package deployment

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition reasons, exactly as kube-controller-manager writes them:
// kubectl rollout status and dashboards match on them.
const (
	reasonReplicaSetUpdated      = "ReplicaSetUpdated"
	reasonFailedRSCreate         = "ReplicaSetCreateError"
	reasonNewReplicaSetCreated   = "NewReplicaSetCreated"
	reasonFoundNewReplicaSet     = "FoundNewReplicaSet"
	reasonNewRSAvailable         = "NewReplicaSetAvailable"
	reasonTimedOut               = "ProgressDeadlineExceeded"
	reasonPaused                 = "DeploymentPaused"
	reasonResumed                = "DeploymentResumed"
	reasonMinimumReplicasAvail   = "MinimumReplicasAvailable"
	reasonMinimumReplicasUnavail = "MinimumReplicasUnavailable"
)

func newCondition(t appsv1.DeploymentConditionType, status v1.ConditionStatus, reason, message string, now time.Time) appsv1.DeploymentCondition {
	ts := metav1.NewTime(now)
	return appsv1.DeploymentCondition{Type: t, Status: status, LastUpdateTime: ts, LastTransitionTime: ts, Reason: reason, Message: message}
}

func getCondition(st appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			c := st.Conditions[i]
			return &c
		}
	}
	return nil
}

// setCondition puts c in st unless a condition of its type with the same
// status and reason is there already (so its times are kept); a change of
// reason with the same status keeps the transition time.
func setCondition(st *appsv1.DeploymentStatus, c appsv1.DeploymentCondition) {
	cur := getCondition(*st, c.Type)
	if cur != nil && cur.Status == c.Status && cur.Reason == c.Reason {
		return
	}
	if cur != nil && cur.Status == c.Status {
		c.LastTransitionTime = cur.LastTransitionTime
	}
	removeCondition(st, c.Type)
	st.Conditions = append(st.Conditions, c)
}

func removeCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) {
	var out []appsv1.DeploymentCondition
	for _, c := range st.Conditions {
		if c.Type != t {
			out = append(out, c)
		}
	}
	st.Conditions = out
}

// fromReplicaSetCondition turns a ReplicaSet's ReplicaFailure condition
// into the Deployment's.
func fromReplicaSetCondition(c appsv1.ReplicaSetCondition) appsv1.DeploymentCondition {
	return appsv1.DeploymentCondition{
		Type:               appsv1.DeploymentConditionType(c.Type),
		Status:             c.Status,
		LastTransitionTime: c.LastTransitionTime,
		LastUpdateTime:     c.LastTransitionTime,
		Reason:             c.Reason,
		Message:            c.Message,
	}
}
