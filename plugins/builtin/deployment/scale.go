package deployment

import (
	"context"
	"fmt"
	"math"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// scale resizes d's ReplicaSets to a changed .spec.replicas without
// starting a rollout. With one active ReplicaSet (or none) it gets the new
// size; mid-rollout the difference is spread over the active ReplicaSets in
// proportion to their sizes, so the rollout continues where it was.
func (c *Controller) scale(ctx context.Context, d *appsv1.Deployment, newRS *appsv1.ReplicaSet, oldRSs []*appsv1.ReplicaSet) error {
	if rs := activeOrLatest(newRS, oldRSs); rs != nil {
		if specReplicas(rs) == desired(d) {
			return nil
		}
		_, _, err := c.scaleReplicaSet(ctx, rs, desired(d), d, false)
		return err
	}
	// The new ReplicaSet is fully available: whatever old pods remain go.
	if isSaturated(d, newRS) {
		for _, old := range activeReplicaSets(oldRSs) {
			if _, _, err := c.scaleReplicaSet(ctx, old, 0, d, false); err != nil {
				return err
			}
		}
		return nil
	}
	if !isRollingUpdate(d) {
		return nil // Recreate never runs two ReplicaSets at once
	}
	return c.scaleProportionally(ctx, d, activeReplicaSets(append(oldRSs, newRS)))
}

func (c *Controller) scaleProportionally(ctx context.Context, d *appsv1.Deployment, rss []*appsv1.ReplicaSet) error {
	var allowed int32
	if desired(d) > 0 {
		allowed = desired(d) + maxSurge(d)
	}
	toAdd := allowed - sumSpecReplicas(rss)
	switch {
	case toAdd > 0:
		largestFirst(rss, true) // grow the newest of equal sizes first
	case toAdd < 0:
		largestFirst(rss, false) // shrink the oldest of equal sizes first
	}
	sizes := make(map[string]int32, len(rss))
	var added int32
	for _, rs := range rss {
		share := int32(0)
		if toAdd != 0 {
			share = proportion(rs, d, toAdd, added)
		}
		sizes[rs.Name] = specReplicas(rs) + share
		added += share
	}
	for i, rs := range rss {
		// Rounding leftovers go to the largest ReplicaSet.
		if i == 0 && toAdd != 0 {
			sizes[rs.Name] = max(sizes[rs.Name]+toAdd-added, 0)
		}
		if _, _, err := c.scaleReplicaSet(ctx, rs, sizes[rs.Name], d, true); err != nil {
			return err
		}
	}
	return nil
}

// proportion is how many of toAdd (negative to remove) rs takes, given that
// added were handed out already: its share of the Deployment's new
// ceiling, by its size against the ceiling it was sized for.
func proportion(rs *appsv1.ReplicaSet, d *appsv1.Deployment, toAdd, added int32) int32 {
	if specReplicas(rs) == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	fraction := fractionOf(rs, d)
	if rest := toAdd - added; toAdd > 0 {
		return min(fraction, rest)
	} else {
		return max(fraction, rest)
	}
}

func fractionOf(rs *appsv1.ReplicaSet, d *appsv1.Deployment) int32 {
	if desired(d) == 0 {
		return -specReplicas(rs)
	}
	ceiling := desired(d) + maxSurge(d)
	before, ok := int32Annotation(rs, maxReplicasAnnotation)
	if !ok || before == 0 {
		before = d.Status.Replicas
		if before == 0 {
			return 0
		}
	}
	size := float64(specReplicas(rs)*ceiling) / float64(before)
	return int32(math.Round(size)) - specReplicas(rs)
}

// activeOrLatest returns the one ReplicaSet with replicas when there is
// exactly one, the new (or else the newest old) one when none has any, and
// nil when several have.
func activeOrLatest(newRS *appsv1.ReplicaSet, oldRSs []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	if newRS == nil && len(oldRSs) == 0 {
		return nil
	}
	olderFirst(oldRSs)
	active := activeReplicaSets(append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS))
	switch len(active) {
	case 0:
		if newRS != nil {
			return newRS
		}
		return oldRSs[len(oldRSs)-1]
	case 1:
		return active[0]
	}
	return nil
}

// isSaturated reports whether rs has all of d's replicas, sized for d's
// current size, and all available.
func isSaturated(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	if rs == nil {
		return false
	}
	want, ok := int32Annotation(rs, desiredReplicasAnnotation)
	return ok && specReplicas(rs) == desired(d) && want == desired(d) && rs.Status.AvailableReplicas == desired(d)
}

// newReplicaSetSize is how big the new ReplicaSet may be now: everything
// for Recreate; for a rolling update, up to .spec.replicas but keeping all
// ReplicaSets together within replicas + maxSurge.
func newReplicaSetSize(d *appsv1.Deployment, allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (int32, error) {
	switch d.Spec.Strategy.Type {
	case appsv1.RollingUpdateDeploymentStrategyType:
		surge, _, err := fenceposts(d)
		if err != nil {
			return 0, err
		}
		ceiling := desired(d) + surge
		current := sumSpecReplicas(allRSs)
		if current >= ceiling {
			return specReplicas(newRS), nil
		}
		return specReplicas(newRS) + min(ceiling-current, desired(d)-specReplicas(newRS)), nil
	case appsv1.RecreateDeploymentStrategyType:
		return desired(d), nil
	}
	return 0, fmt.Errorf("%w %q", errUnknownStrategy, d.Spec.Strategy.Type)
}

// scaleReplicaSet sets rs's size to size (and its replica annotations to
// d's current size); force rewrites stale annotations even when the size
// is right. It reports whether the size changed.
func (c *Controller) scaleReplicaSet(ctx context.Context, rs *appsv1.ReplicaSet, size int32, d *appsv1.Deployment, force bool) (bool, *appsv1.ReplicaSet, error) {
	from := specReplicas(rs)
	if !force && from == size {
		return false, rs, nil
	}
	ceiling := desired(d) + maxSurge(d)
	resize := from != size
	if !resize && !replicasAnnotationsStale(rs, desired(d), ceiling) {
		return false, rs, nil
	}
	cp := rs.DeepCopy()
	cp.Spec.Replicas = &size
	setReplicasAnnotations(cp, desired(d), ceiling)
	updated, err := c.client.AppsV1().ReplicaSets(cp.Namespace).Update(ctx, cp, metav1.UpdateOptions{})
	if err != nil {
		return false, rs, fmt.Errorf("scaling replica set %s to %d: %w", rs.Name, size, err)
	}
	if resize {
		dir := "up"
		if size < from {
			dir = "down"
		}
		c.events.Eventf(d, v1.EventTypeNormal, "ScalingReplicaSet", "Scaled %s replica set %s from %d to %d", dir, rs.Name, from, size)
	}
	return resize, updated, nil
}

// cleanupOldReplicaSets deletes the oldest revisions beyond
// .spec.revisionHistoryLimit among old ReplicaSets that are fully scaled
// down and synced.
func (c *Controller) cleanupOldReplicaSets(ctx context.Context, oldRSs []*appsv1.ReplicaSet, d *appsv1.Deployment) error {
	if !hasRevisionHistoryLimit(d) {
		return nil
	}
	var alive []*appsv1.ReplicaSet
	for _, rs := range oldRSs {
		if rs != nil && rs.DeletionTimestamp == nil {
			alive = append(alive, rs)
		}
	}
	excess := int32(len(alive)) - *d.Spec.RevisionHistoryLimit
	if excess <= 0 {
		return nil
	}
	byRevision(alive)
	for _, rs := range alive[:excess] {
		if rs.Status.Replicas != 0 || specReplicas(rs) != 0 || rs.Generation > rs.Status.ObservedGeneration {
			continue
		}
		c.logger.Debug("deleting an old replica set beyond the revision history limit", "deployment", keyOf(d), "replicaSet", rs.Name)
		err := c.client.AppsV1().ReplicaSets(rs.Namespace).Delete(ctx, rs.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting old replica set %s: %w", rs.Name, err)
		}
	}
	return nil
}
