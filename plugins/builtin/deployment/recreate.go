package deployment

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// rolloutRecreate takes one step of a Recreate rollout: scale every old
// ReplicaSet to zero, wait until no old pod runs, then create or scale up
// the new one.
func (c *Controller) rolloutRecreate(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, oldRSs, err := c.replicaSetsAndRevision(ctx, d, rsList, false)
	if err != nil {
		return err
	}
	allRSs := append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS)
	scaledDown := false
	active := activeReplicaSets(oldRSs)
	for _, rs := range active {
		scaled, _, err := c.scaleReplicaSet(ctx, rs, 0, d, false)
		if err != nil {
			return err
		}
		scaledDown = scaledDown || scaled
	}
	if scaledDown {
		return c.syncRolloutStatus(ctx, allRSs, newRS, d)
	}
	running, err := c.oldPodsRunning(ctx, oldRSs)
	if err != nil {
		return err
	}
	if running {
		return c.syncRolloutStatus(ctx, allRSs, newRS, d)
	}
	if newRS == nil {
		if newRS, oldRSs, err = c.replicaSetsAndRevision(ctx, d, rsList, true); err != nil {
			return err
		}
		allRSs = append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS)
	}
	if _, _, err := c.scaleReplicaSet(ctx, newRS, desired(d), d, false); err != nil {
		return err
	}
	if complete(d, &d.Status) {
		if err := c.cleanupOldReplicaSets(ctx, oldRSs, d); err != nil {
			return err
		}
	}
	return c.syncRolloutStatus(ctx, allRSs, newRS, d)
}

// oldPodsRunning reports whether any pod of an old ReplicaSet may still
// run: one counted in its status as a replica (any phase but Succeeded and
// Failed, Unknown included) or as terminating. A ReplicaSet whose
// controller does not report terminatingReplicas has its pods listed.
//
// Upstream's deployment controller watches every pod for this; reading the
// ReplicaSets' status instead spares this plugin a second cache of all pods
// (the replicaset plugin has one), and each status change of an old
// ReplicaSet brings the Deployment back here.
func (c *Controller) oldPodsRunning(ctx context.Context, oldRSs []*appsv1.ReplicaSet) (bool, error) {
	for _, rs := range oldRSs {
		switch st := rs.Status; {
		case st.Replicas > 0:
			return true, nil
		case st.TerminatingReplicas != nil && *st.TerminatingReplicas > 0:
			return true, nil
		case st.TerminatingReplicas == nil:
			running, err := c.podsRunning(ctx, rs)
			if err != nil || running {
				return running, err
			}
		}
	}
	return false, nil
}

// podsRunning lists the pods rs controls and reports whether one has not
// finished.
func (c *Controller) podsRunning(ctx context.Context, rs *appsv1.ReplicaSet) (bool, error) {
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		return false, nil // selects nothing
	}
	list, err := c.client.CoreV1().Pods(rs.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return false, fmt.Errorf("listing the pods of replica set %s: %w", rs.Name, err)
	}
	for i := range list.Items {
		p := &list.Items[i]
		if metav1.IsControlledBy(p, rs) && p.Status.Phase != v1.PodFailed && p.Status.Phase != v1.PodSucceeded {
			return true, nil
		}
	}
	return false, nil
}
