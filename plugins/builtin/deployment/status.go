package deployment

import (
	"context"
	"fmt"
	"reflect"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
)

// calculateStatus is d's status from its ReplicaSets, with the Available
// condition; other conditions are carried over.
func calculateStatus(allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment, now time.Time) appsv1.DeploymentStatus {
	available := sumStatus(allRSs, statusAvailable)
	st := appsv1.DeploymentStatus{
		ObservedGeneration:  d.Generation,
		Replicas:            sumStatus(allRSs, statusReplicas),
		UpdatedReplicas:     sumStatus([]*appsv1.ReplicaSet{newRS}, statusReplicas),
		ReadyReplicas:       sumStatus(allRSs, statusReady),
		AvailableReplicas:   available,
		UnavailableReplicas: max(sumSpecReplicas(allRSs)-available, 0),
		TerminatingReplicas: sumTerminating(allRSs),
		CollisionCount:      d.Status.CollisionCount,
	}
	st.Conditions = append(st.Conditions, d.Status.Conditions...)
	if available >= desired(d)-maxUnavailable(d) {
		setCondition(&st, newCondition(appsv1.DeploymentAvailable, v1.ConditionTrue, reasonMinimumReplicasAvail, "Deployment has minimum availability.", now))
	} else {
		setCondition(&st, newCondition(appsv1.DeploymentAvailable, v1.ConditionFalse, reasonMinimumReplicasUnavail, "Deployment does not have minimum availability.", now))
	}
	return st
}

// syncStatus writes d's status when it changed (paused, scaling, being
// deleted: no Progressing bookkeeping).
func (c *Controller) syncStatus(ctx context.Context, allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) error {
	st := calculateStatus(allRSs, newRS, d, c.clock.Now())
	if reflect.DeepEqual(d.Status, st) {
		return nil
	}
	d.Status = st
	return c.updateStatus(ctx, d)
}

// syncRolloutStatus writes d's status during a rollout, with the
// Progressing condition: complete, progressing (any replica updated, old
// one gone, or pod become ready or available since the last status), or
// timed out after progressDeadlineSeconds without progress; and the
// ReplicaFailure condition of its ReplicaSets.
func (c *Controller) syncRolloutStatus(ctx context.Context, allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) error {
	now := c.clock.Now()
	st := calculateStatus(allRSs, newRS, d, now)
	if !hasProgressDeadline(d) {
		removeCondition(&st, appsv1.DeploymentProgressing)
	}
	cur := getCondition(d.Status, appsv1.DeploymentProgressing)
	done := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == reasonNewRSAvailable
	if hasProgressDeadline(d) && !done {
		c.setProgressing(d, &st, newRS, cur, now)
	}
	if failures := replicaFailures(allRSs, newRS); len(failures) > 0 {
		setCondition(&st, failures[0])
	} else {
		removeCondition(&st, appsv1.DeploymentReplicaFailure)
	}
	if reflect.DeepEqual(d.Status, st) {
		c.requeueStuck(d, st)
		return nil
	}
	d.Status = st
	return c.updateStatus(ctx, d)
}

func (c *Controller) setProgressing(d *appsv1.Deployment, st *appsv1.DeploymentStatus, newRS *appsv1.ReplicaSet, cur *appsv1.DeploymentCondition, now time.Time) {
	subject := fmt.Sprintf("Deployment %q", d.Name)
	if newRS != nil {
		subject = fmt.Sprintf("ReplicaSet %q", newRS.Name)
	}
	switch {
	case complete(d, st):
		setCondition(st, newCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, reasonNewRSAvailable, subject+" has successfully progressed.", now))
	case progressing(d, st):
		cond := newCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, reasonReplicaSetUpdated, subject+" is progressing.", now)
		// Progress renews lastUpdateTime (the deadline counts from it)
		// even when the reason stays the same.
		if cur != nil {
			if cur.Status == v1.ConditionTrue {
				cond.LastTransitionTime = cur.LastTransitionTime
			}
			removeCondition(st, appsv1.DeploymentProgressing)
		}
		setCondition(st, cond)
	case timedOut(d, st, now):
		setCondition(st, newCondition(appsv1.DeploymentProgressing, v1.ConditionFalse, reasonTimedOut, subject+" has timed out progressing.", now))
	}
}

// progressing reports whether st shows progress over d's last status.
func progressing(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	old := d.Status
	return st.UpdatedReplicas > old.UpdatedReplicas ||
		st.Replicas-st.UpdatedReplicas < old.Replicas-old.UpdatedReplicas ||
		st.ReadyReplicas > old.ReadyReplicas ||
		st.AvailableReplicas > old.AvailableReplicas
}

// timedOut reports whether progressDeadlineSeconds passed since the
// Progressing condition last recorded progress.
func timedOut(d *appsv1.Deployment, st *appsv1.DeploymentStatus, now time.Time) bool {
	if !hasProgressDeadline(d) {
		return false
	}
	cond := getCondition(*st, appsv1.DeploymentProgressing)
	switch {
	case cond == nil || cond.Reason == reasonNewRSAvailable:
		return false
	case cond.Reason == reasonTimedOut:
		return true
	}
	return cond.LastUpdateTime.Add(deadline(d)).Before(now)
}

func deadline(d *appsv1.Deployment) time.Duration {
	return time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second
}

// replicaFailures returns the ReplicaFailure conditions of the new
// ReplicaSet, or else of any ReplicaSet.
func replicaFailures(allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) []appsv1.DeploymentCondition {
	collect := func(rss []*appsv1.ReplicaSet) []appsv1.DeploymentCondition {
		var out []appsv1.DeploymentCondition
		for _, rs := range rss {
			if rs == nil {
				continue
			}
			for _, c := range rs.Status.Conditions {
				if c.Type == appsv1.ReplicaSetReplicaFailure {
					out = append(out, fromReplicaSetCondition(c))
				}
			}
		}
		return out
	}
	if out := collect([]*appsv1.ReplicaSet{newRS}); len(out) > 0 {
		return out
	}
	return collect(allRSs)
}

// requeueStuck brings d back when its progress deadline passes, since no
// event marks that moment.
func (c *Controller) requeueStuck(d *appsv1.Deployment, st appsv1.DeploymentStatus) {
	cur := getCondition(d.Status, appsv1.DeploymentProgressing)
	if !hasProgressDeadline(d) || cur == nil || complete(d, &st) || cur.Reason == reasonTimedOut {
		return
	}
	after := cur.LastUpdateTime.Add(deadline(d)).Sub(c.clock.Now())
	if after < time.Second {
		c.loop.AddRateLimited(keyOf(d))
		return
	}
	c.loop.AddAfter(keyOf(d), after+time.Second)
}
