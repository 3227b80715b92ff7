package deployment

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
)

// rolloutRolling takes one step of a rolling update: scale the new
// ReplicaSet up within maxSurge, or else old ones down within
// maxUnavailable; once complete, clean up old revisions.
func (c *Controller) rolloutRolling(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, oldRSs, err := c.replicaSetsAndRevision(ctx, d, rsList, true)
	if err != nil {
		return err
	}
	allRSs := append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS)
	scaledUp, err := c.reconcileNewReplicaSet(ctx, allRSs, newRS, d)
	if err != nil {
		return err
	}
	if scaledUp {
		return c.syncRolloutStatus(ctx, allRSs, newRS, d)
	}
	scaledDown, err := c.reconcileOldReplicaSets(ctx, allRSs, activeReplicaSets(oldRSs), newRS, d)
	if err != nil {
		return err
	}
	if scaledDown {
		return c.syncRolloutStatus(ctx, allRSs, newRS, d)
	}
	if complete(d, &d.Status) {
		if err := c.cleanupOldReplicaSets(ctx, oldRSs, d); err != nil {
			return err
		}
	}
	return c.syncRolloutStatus(ctx, allRSs, newRS, d)
}

func (c *Controller) reconcileNewReplicaSet(ctx context.Context, allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) (bool, error) {
	switch cur := specReplicas(newRS); {
	case cur == desired(d):
		return false, nil
	case cur > desired(d):
		scaled, _, err := c.scaleReplicaSet(ctx, newRS, desired(d), d, false)
		return scaled, err
	}
	size, err := newReplicaSetSize(d, allRSs, newRS)
	if err != nil {
		return false, err
	}
	scaled, _, err := c.scaleReplicaSet(ctx, newRS, size, d, false)
	return scaled, err
}

// reconcileOldReplicaSets scales old ReplicaSets down as far as
// maxUnavailable allows: first their unavailable pods (which cost no
// availability), then available ones.
func (c *Controller) reconcileOldReplicaSets(ctx context.Context, allRSs, oldRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) (bool, error) {
	if sumSpecReplicas(oldRSs) == 0 {
		return false, nil
	}
	minAvailable := desired(d) - maxUnavailable(d)
	newUnavailable := specReplicas(newRS) - newRS.Status.AvailableReplicas
	// Pods the new ReplicaSet has not made available yet may never become
	// so (a bad image): they must not be counted on.
	maxScaleDown := sumSpecReplicas(allRSs) - minAvailable - newUnavailable
	if maxScaleDown <= 0 {
		return false, nil
	}
	oldRSs, cleaned, err := c.cleanupUnhealthyReplicas(ctx, oldRSs, d, maxScaleDown)
	if err != nil {
		// As upstream: report no progress rather than fail; the next sync
		// tries again.
		c.logger.Info("scaling down unhealthy old replicas failed", "deployment", keyOf(d), "error", err)
		return false, nil
	}
	scaled, err := c.scaleDownOldForRollingUpdate(ctx, append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS), oldRSs, d)
	if err != nil {
		c.logger.Info("scaling down old replica sets failed", "deployment", keyOf(d), "error", err)
		return false, nil
	}
	return cleaned+scaled > 0, nil
}

// cleanupUnhealthyReplicas scales old ReplicaSets (oldest first) down by
// their unavailable pods, at most maxCleanup in all.
func (c *Controller) cleanupUnhealthyReplicas(ctx context.Context, oldRSs []*appsv1.ReplicaSet, d *appsv1.Deployment, maxCleanup int32) ([]*appsv1.ReplicaSet, int32, error) {
	olderFirst(oldRSs)
	var total int32
	for i, rs := range oldRSs {
		if total >= maxCleanup {
			break
		}
		size := specReplicas(rs)
		if size == 0 || size == rs.Status.AvailableReplicas {
			continue
		}
		n := min(maxCleanup-total, size-rs.Status.AvailableReplicas)
		if n < 0 {
			return nil, 0, fmt.Errorf("scaling down unhealthy replicas of %s: would scale %d -> %d", rs.Name, size, size-n)
		}
		_, updated, err := c.scaleReplicaSet(ctx, rs, size-n, d, false)
		if err != nil {
			return nil, total, err
		}
		total += n
		oldRSs[i] = updated
	}
	return oldRSs, total, nil
}

// scaleDownOldForRollingUpdate scales old ReplicaSets (oldest first) down
// by as many pods as are available beyond minAvailable.
func (c *Controller) scaleDownOldForRollingUpdate(ctx context.Context, allRSs, oldRSs []*appsv1.ReplicaSet, d *appsv1.Deployment) (int32, error) {
	minAvailable := desired(d) - maxUnavailable(d)
	available := sumStatus(allRSs, statusAvailable)
	if available <= minAvailable {
		return 0, nil
	}
	olderFirst(oldRSs)
	budget := available - minAvailable
	var total int32
	for _, rs := range oldRSs {
		if total >= budget {
			break
		}
		size := specReplicas(rs)
		if size == 0 {
			continue
		}
		n := min(size, budget-total)
		if _, _, err := c.scaleReplicaSet(ctx, rs, size-n, d, false); err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// complete reports whether st shows every replica updated and available
// for d's current generation.
func complete(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	return st.UpdatedReplicas == desired(d) && st.Replicas == desired(d) &&
		st.AvailableReplicas == desired(d) && st.ObservedGeneration >= d.Generation
}
