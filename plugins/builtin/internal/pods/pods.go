// Package pods holds the facts about a pod that the workload controllers
// judge by, exactly as kube-controller-manager judges them: whether a pod is
// active, terminating, ready or available, and which pods a controller
// should delete first when it scales down.
package pods

import (
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
)

// DeletionCostAnnotation lets users rank pods of a ReplicaSet for scale
// down: lower cost goes first.
const DeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// IsActive reports whether p still counts as a replica: not terminated and
// not being deleted.
func IsActive(p *v1.Pod) bool {
	return p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed && p.DeletionTimestamp == nil
}

// IsTerminal reports whether p has finished (Succeeded or Failed).
func IsTerminal(p *v1.Pod) bool {
	return p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed
}

// IsTerminating reports whether p is being deleted but has not finished.
func IsTerminating(p *v1.Pod) bool {
	return !IsTerminal(p) && p.DeletionTimestamp != nil
}

// ReadyCondition returns p's Ready condition, or nil.
func ReadyCondition(p *v1.Pod) *v1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == v1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// IsReady reports whether p's Ready condition is True.
func IsReady(p *v1.Pod) bool {
	c := ReadyCondition(p)
	return c != nil && c.Status == v1.ConditionTrue
}

// IsAvailable reports whether p has been ready for at least minReadySeconds
// at now. A ready pod with no transition time counts as available only when
// minReadySeconds is zero.
func IsAvailable(p *v1.Pod, minReadySeconds int32, now time.Time) bool {
	if !IsReady(p) {
		return false
	}
	if minReadySeconds == 0 {
		return true
	}
	c := ReadyCondition(p)
	if c.LastTransitionTime.IsZero() {
		return false
	}
	return !c.LastTransitionTime.Add(time.Duration(minReadySeconds) * time.Second).After(now)
}

// untilAvailable is how long after now a ready pod becomes available, or
// nil if it never will by waiting (not ready, no minReadySeconds, no
// transition time) or already is.
func untilAvailable(p *v1.Pod, minReadySeconds int32, now time.Time) *time.Duration {
	if minReadySeconds <= 0 || !IsReady(p) {
		return nil
	}
	c := ReadyCondition(p)
	if c.LastTransitionTime.IsZero() {
		return nil
	}
	d := c.LastTransitionTime.Add(time.Duration(minReadySeconds) * time.Second).Sub(now)
	if d <= 0 {
		return nil
	}
	return &d
}

// NextAvailabilityCheck returns when the owner's status should be computed
// again so that a pod that was ready but not yet available at evaluatedAt
// is counted as soon as it becomes available: the earliest such pod's wait,
// measured again at now (the status write took time); zero if that moment
// has already passed; nil if no pod is waiting.
func NextAvailabilityCheck(ps []*v1.Pod, minReadySeconds int32, evaluatedAt, now time.Time) *time.Duration {
	var first *v1.Pod
	var wait *time.Duration
	for _, p := range ps {
		if d := untilAvailable(p, minReadySeconds, evaluatedAt); d != nil && (wait == nil || *d < *wait) {
			first, wait = p, d
		}
	}
	if first == nil {
		return nil
	}
	if d := untilAvailable(first, minReadySeconds, now); d != nil {
		return d
	}
	zero := time.Duration(0)
	return &zero
}

// DeletionCost parses the pod-deletion-cost annotation. Missing or invalid
// values (a leading '+' or zero, not a number, out of int32 range) cost 0, as upstream.
func DeletionCost(p *v1.Pod) int32 {
	s, ok := p.Annotations[DeletionCostAnnotation]
	if !ok || s == "" {
		return 0
	}
	if s[0] != '-' && s != "0" && (s[0] < '1' || s[0] > '9') {
		return 0
	}
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0
	}
	return int32(v)
}
