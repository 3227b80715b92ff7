package deployment

import (
	"context"
	"fmt"
	"reflect"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
)

// sync reconciles the Deployment named key. Like upstream it takes at most
// one rollout step per call (a scale, a new ReplicaSet, a batch of scale
// downs) and writes status; the informers' events bring it back.
func (c *Controller) sync(ctx context.Context, key string) error {
	obj, exists, err := c.deployments.GetIndexer().GetByKey(key)
	if err != nil {
		return fmt.Errorf("reading %s from the cache: %w", key, err)
	}
	if !exists {
		return nil // its ReplicaSets go with the garbage collector
	}
	d := obj.(*appsv1.Deployment).DeepCopy()
	withDefaults(d)
	log := c.logger.With("deployment", key)

	if d.Spec.Selector == nil {
		// The API server requires a selector; retrying cannot add one.
		log.Error("not reconciling a deployment without spec.selector")
		return nil
	}
	if reflect.DeepEqual(d.Spec.Selector, &metav1.LabelSelector{}) {
		c.events.Eventf(d, v1.EventTypeWarning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.")
		if d.Status.ObservedGeneration < d.Generation {
			d.Status.ObservedGeneration = d.Generation
			return c.updateStatus(ctx, d)
		}
		return nil
	}
	rsList, err := c.claimReplicaSets(ctx, d)
	if err != nil {
		return err
	}
	if d.DeletionTimestamp != nil {
		return c.syncStatusOnly(ctx, d, rsList)
	}
	if err := c.checkPausedConditions(ctx, d); err != nil {
		return err
	}
	if d.Spec.Paused {
		return c.syncScale(ctx, d, rsList)
	}
	if rollbackTo(d) != nil {
		return c.rollback(ctx, d, rsList)
	}
	scaling, err := c.isScalingEvent(ctx, d, rsList)
	if err != nil {
		return err
	}
	if scaling {
		return c.syncScale(ctx, d, rsList)
	}
	switch d.Spec.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		return c.rolloutRecreate(ctx, d, rsList)
	case appsv1.RollingUpdateDeploymentStrategyType:
		return c.rolloutRolling(ctx, d, rsList)
	}
	log.Error("not reconciling a deployment with an unknown strategy", "strategy", d.Spec.Strategy.Type)
	return fmt.Errorf("%w %q in spec.strategy.type of %s: use RollingUpdate or Recreate", errUnknownStrategy, d.Spec.Strategy.Type, key)
}

// withDefaults fills what the API server defaults, so a Deployment written
// around it (a test's, an old one) cannot make the controller dereference
// nil. It changes only the controller's copy.
func withDefaults(d *appsv1.Deployment) {
	if d.Spec.Replicas == nil {
		one := int32(1)
		d.Spec.Replicas = &one
	}
	if d.Spec.Strategy.Type == "" {
		d.Spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if isRollingUpdate(d) && d.Spec.Strategy.RollingUpdate == nil {
		q := intstr.FromString("25%")
		d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &q, MaxUnavailable: &q}
	}
}

// updateStatus writes d's status (and annotations: the status subresource
// of a Deployment accepts them, which is how the revision annotation is
// kept), and takes the new resourceVersion so a second write in the same
// sync does not conflict with the first.
func (c *Controller) updateStatus(ctx context.Context, d *appsv1.Deployment) error {
	updated, err := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("updating the status of deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	d.ResourceVersion = updated.ResourceVersion
	return nil
}

// syncStatusOnly writes status for a Deployment being deleted.
func (c *Controller) syncStatusOnly(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, oldRSs, err := c.replicaSetsAndRevision(ctx, d, rsList, false)
	if err != nil {
		return err
	}
	return c.syncStatus(ctx, append(oldRSs, newRS), newRS, d)
}

// syncScale handles a paused Deployment and a change of .spec.replicas:
// it resizes ReplicaSets without rolling out, and (when paused) cleans up
// old ReplicaSets.
func (c *Controller) syncScale(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, oldRSs, err := c.replicaSetsAndRevision(ctx, d, rsList, false)
	if err != nil {
		return err
	}
	if err := c.scale(ctx, d, newRS, oldRSs); err != nil {
		return err
	}
	if d.Spec.Paused && rollbackTo(d) == nil {
		if err := c.cleanupOldReplicaSets(ctx, oldRSs, d); err != nil {
			return err
		}
	}
	return c.syncStatus(ctx, append(oldRSs, newRS), newRS, d)
}

// checkPausedConditions keeps the Progressing condition in step with
// .spec.paused, so a paused rollout never counts as timed out.
func (c *Controller) checkPausedConditions(ctx context.Context, d *appsv1.Deployment) error {
	if !hasProgressDeadline(d) {
		return nil
	}
	cond := getCondition(d.Status, appsv1.DeploymentProgressing)
	if cond != nil && cond.Reason == reasonTimedOut {
		return nil // a failed rollout stays failed until a new one starts
	}
	pausedShown := cond != nil && cond.Reason == reasonPaused
	switch {
	case d.Spec.Paused && !pausedShown:
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, v1.ConditionUnknown, reasonPaused, "Deployment is paused", c.clock.Now()))
	case !d.Spec.Paused && pausedShown:
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, v1.ConditionUnknown, reasonResumed, "Deployment is resumed", c.clock.Now()))
	default:
		return nil
	}
	return c.updateStatus(ctx, d)
}

// isScalingEvent reports whether .spec.replicas changed since the active
// ReplicaSets were last sized (their desired-replicas annotation).
func (c *Controller) isScalingEvent(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) (bool, error) {
	newRS, oldRSs, err := c.replicaSetsAndRevision(ctx, d, rsList, false)
	if err != nil {
		return false, err
	}
	for _, rs := range activeReplicaSets(append(oldRSs, newRS)) {
		if want, ok := int32Annotation(rs, desiredReplicasAnnotation); ok && want != desired(d) {
			return true, nil
		}
	}
	return false, nil
}

// replicaSetsAndRevision splits rsList into the new ReplicaSet (the one
// whose template is d's, created when create is set and none exists; nil
// otherwise) and all the others, and brings the revisions up to date.
func (c *Controller) replicaSetsAndRevision(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet, error) {
	existing := findNewReplicaSet(d, rsList)
	var oldRSs []*appsv1.ReplicaSet
	for _, rs := range rsList {
		if existing == nil || rs.UID != existing.UID {
			oldRSs = append(oldRSs, rs)
		}
	}
	newRS, err := c.newReplicaSet(ctx, d, existing, oldRSs, create)
	if err != nil {
		return nil, nil, err
	}
	return newRS, oldRSs, nil
}

// findNewReplicaSet returns the oldest ReplicaSet whose template equals
// d's (ignoring the pod-template-hash label), or nil.
func findNewReplicaSet(d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	olderFirst(rsList)
	for _, rs := range rsList {
		if equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
			return rs
		}
	}
	return nil
}

// newReplicaSet brings the existing new ReplicaSet's revision,
// annotations and minReadySeconds up to date, or creates it (when create
// is set) sized by the strategy.
func (c *Controller) newReplicaSet(ctx context.Context, d *appsv1.Deployment, existing *appsv1.ReplicaSet, oldRSs []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, error) {
	newRevision := strconv.FormatInt(maxRevision(c.logger, oldRSs)+1, 10)
	if existing != nil {
		return c.refreshNewReplicaSet(ctx, d, existing, newRevision)
	}
	if !create {
		return nil, nil
	}
	return c.createNewReplicaSet(ctx, d, oldRSs, newRevision)
}

func (c *Controller) refreshNewReplicaSet(ctx context.Context, d *appsv1.Deployment, existing *appsv1.ReplicaSet, newRevision string) (*appsv1.ReplicaSet, error) {
	rs := existing.DeepCopy()
	annotated := setNewReplicaSetAnnotations(c.logger, d, rs, newRevision, true)
	if annotated || rs.Spec.MinReadySeconds != d.Spec.MinReadySeconds {
		rs.Spec.MinReadySeconds = d.Spec.MinReadySeconds
		updated, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, rs, metav1.UpdateOptions{})
		if err != nil {
			return nil, fmt.Errorf("updating replica set %s: %w", rs.Name, err)
		}
		return updated, nil
	}
	changed := setDeploymentRevision(d, rs.Annotations[revisionAnnotation])
	if hasProgressDeadline(d) && getCondition(d.Status, appsv1.DeploymentProgressing) == nil {
		msg := fmt.Sprintf("Found new replica set %q", rs.Name)
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, reasonFoundNewReplicaSet, msg, c.clock.Now()))
		changed = true
	}
	if changed {
		if err := c.updateStatus(ctx, d); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

func (c *Controller) createNewReplicaSet(ctx context.Context, d *appsv1.Deployment, oldRSs []*appsv1.ReplicaSet, newRevision string) (*appsv1.ReplicaSet, error) {
	rs := newReplicaSetFor(d)
	size, err := newReplicaSetSize(d, append(oldRSs, rs), rs)
	if err != nil {
		return nil, err
	}
	*rs.Spec.Replicas = size
	setNewReplicaSetAnnotations(c.logger, d, rs, newRevision, false)
	created, err := c.client.AppsV1().ReplicaSets(d.Namespace).Create(ctx, rs, metav1.CreateOptions{})
	alreadyExisted := false
	switch {
	case apierrors.IsAlreadyExists(err):
		theirs, cached, ours := c.replicaSetNamed(d, rs.Name)
		if !cached {
			return nil, fmt.Errorf("replica set %s exists but is not in the cache yet: %w", rs.Name, err)
		}
		if !ours {
			return nil, c.bumpCollisionCount(ctx, d, err)
		}
		// Ours, created by an earlier sync whose event the cache has not
		// shown yet.
		created, err, alreadyExisted = theirs, nil, true
	case apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause):
		return nil, err
	case err != nil:
		msg := fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err)
		if hasProgressDeadline(d) {
			setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, v1.ConditionFalse, reasonFailedRSCreate, msg, c.clock.Now()))
			if uerr := c.updateStatus(ctx, d); uerr != nil {
				c.logger.Info("recording the failed creation in status failed", "deployment", keyOf(d), "error", uerr)
			}
		}
		c.events.Eventf(d, v1.EventTypeWarning, reasonFailedRSCreate, "%s", msg)
		return nil, fmt.Errorf("creating replica set %s: %w", rs.Name, err)
	}
	if !alreadyExisted && size > 0 {
		c.events.Eventf(d, v1.EventTypeNormal, "ScalingReplicaSet", "Scaled up replica set %s from 0 to %d", created.Name, size)
	}
	changed := setDeploymentRevision(d, newRevision)
	if !alreadyExisted && hasProgressDeadline(d) {
		msg := fmt.Sprintf("Created new replica set %q", created.Name)
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, reasonNewReplicaSetCreated, msg, c.clock.Now()))
		changed = true
	}
	if changed {
		if err := c.updateStatus(ctx, d); err != nil {
			return created, err
		}
	}
	return created, nil
}

// newReplicaSetFor is the ReplicaSet d's template gets: named and labelled
// by the template's hash (which also joins its selector, so ReplicaSets of
// one Deployment never select each other's pods), with zero replicas.
func newReplicaSetFor(d *appsv1.Deployment) *appsv1.ReplicaSet {
	template := *d.Spec.Template.DeepCopy()
	hash := templateHash(&template, d.Status.CollisionCount)
	template.Labels = withLabel(d.Spec.Template.Labels, appsv1.DefaultDeploymentUniqueLabelKey, hash)
	selector := d.Spec.Selector.DeepCopy()
	selector.MatchLabels = withLabel(selector.MatchLabels, appsv1.DefaultDeploymentUniqueLabelKey, hash)
	zero := int32(0)
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:            replicaSetName(d.Name, hash),
			Namespace:       d.Namespace,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, deploymentKind)},
			Labels:          template.Labels,
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas:        &zero,
			MinReadySeconds: d.Spec.MinReadySeconds,
			Selector:        selector,
			Template:        template,
		},
	}
}

func withLabel(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for mk, mv := range m {
		out[mk] = mv
	}
	out[k] = v
	return out
}

// replicaSetNamed returns the cached ReplicaSet name (cached false when the
// cache does not have it), and whether d controls it with d's template.
func (c *Controller) replicaSetNamed(d *appsv1.Deployment, name string) (rs *appsv1.ReplicaSet, cached, ours bool) {
	obj, ok, err := c.replicaSets.GetIndexer().GetByKey(cache.NewObjectName(d.Namespace, name).String())
	if err != nil || !ok {
		return nil, false, false
	}
	rs = obj.(*appsv1.ReplicaSet)
	ref := metav1.GetControllerOfNoCopy(rs)
	return rs, true, ref != nil && ref.UID == d.UID && equalIgnoreHash(&d.Spec.Template, &rs.Spec.Template)
}

// bumpCollisionCount handles a ReplicaSet name taken by something else:
// the collision count joins the hash, so the next sync tries a new name.
func (c *Controller) bumpCollisionCount(ctx context.Context, d *appsv1.Deployment, createErr error) error {
	if d.Status.CollisionCount == nil {
		d.Status.CollisionCount = new(int32)
	}
	*d.Status.CollisionCount++
	if err := c.updateStatus(ctx, d); err == nil {
		c.logger.Info("replica set name taken; bumped the collision count", "deployment", keyOf(d), "collisionCount", *d.Status.CollisionCount)
	}
	return createErr
}
