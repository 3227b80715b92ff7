package statefulset

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/plugins/sdk"
)

// waitRetry is how soon a sync blocked on a pod's health looks again if no
// pod event comes first (events normally do).
const waitRetry = 5 * time.Second

// plan splits the members into the ordinals the set wants (replicas, by
// index from the start ordinal; nil where missing) and the others
// (condemned, highest ordinal first).
func plan(set *appsv1.StatefulSet, members []*v1.Pod) (replicas, condemned []*v1.Pod) {
	start, n := startOrdinal(set), replicasOf(set)
	replicas = make([]*v1.Pod, n)
	for _, p := range members {
		ord := ordinalOf(set, p)
		if ord >= start && ord < start+n {
			replicas[ord-start] = p
		} else {
			condemned = append(condemned, p)
		}
	}
	sort.Slice(condemned, func(i, j int) bool { return ordinalOf(set, condemned[i]) > ordinalOf(set, condemned[j]) })
	return replicas, condemned
}

// syncPods makes one step: replace failed pods and create missing ones (in
// order for OrderedReady, all for Parallel), remove condemned ones from the
// highest ordinal down, then roll pods to the update revision.
func (c *controller) syncPods(ctx context.Context, set *appsv1.StatefulSet, revs *revisions, members []*v1.Pod) (sdk.Result, error) {
	now := c.clock.Now()
	monotonic := set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	minReady := set.Spec.MinReadySeconds
	replicas, condemned := plan(set, members)
	start := startOrdinal(set)

	var creates []int
	var deletes []*v1.Pod
	for i, p := range replicas {
		switch {
		case p == nil:
			creates = append(creates, start+i)
		case (isFailed(p) || isSucceeded(p)) && !isTerminating(p):
			c.events.Eventf(set, v1.EventTypeWarning, "RecreatingFailedPod", "StatefulSet %s/%s is recreating %s Pod %s", set.Namespace, set.Name, p.Status.Phase, p.Name)
			deletes = append(deletes, p)
		default:
			if err := c.fixIdentity(ctx, set, p, start+i, false); err != nil {
				return sdk.Result{}, err
			}
			if monotonic && !isHealthy(p, minReady, now) && len(creates) == 0 && len(deletes) == 0 {
				return sdk.Result{RequeueAfter: waitRetry}, nil // wait for it before the next ordinal
			}
		}
		if monotonic && (len(creates) > 0 || len(deletes) > 0) {
			break
		}
	}
	if len(deletes) > 0 {
		return sdk.Result{}, c.deletePods(ctx, set, deletes)
	}
	if len(creates) > 0 {
		return sdk.Result{}, c.createPods(ctx, set, revs, creates)
	}
	if done, res, err := c.scaleDown(ctx, set, replicas, condemned, monotonic, now); done || err != nil {
		return res, err
	}
	return c.rollingUpdate(ctx, set, revs, replicas, now)
}

// scaleDown deletes condemned pods, highest ordinal first; ordered sets
// delete one at a time and only while every other pod is healthy.
func (c *controller) scaleDown(ctx context.Context, set *appsv1.StatefulSet, replicas, condemned []*v1.Pod, monotonic bool, now time.Time) (bool, sdk.Result, error) {
	if len(condemned) == 0 {
		return false, sdk.Result{}, nil
	}
	minReady := set.Spec.MinReadySeconds
	// The first unhealthy pod in ordinal order: replicas, then the
	// condemned from the lowest ordinal (they are sorted highest first).
	// Only it may be removed while any pod is unhealthy, as upstream.
	var firstUnhealthy *v1.Pod
	ordered := append([]*v1.Pod{}, replicas...)
	for i := len(condemned) - 1; i >= 0; i-- {
		ordered = append(ordered, condemned[i])
	}
	for _, p := range ordered {
		if p != nil && !isHealthy(p, minReady, now) {
			firstUnhealthy = p
			break
		}
	}
	var deletes []*v1.Pod
	for _, p := range condemned {
		if isTerminating(p) {
			if monotonic {
				return true, sdk.Result{RequeueAfter: waitRetry}, nil
			}
			continue
		}
		if monotonic && firstUnhealthy != nil && firstUnhealthy != p {
			return true, sdk.Result{RequeueAfter: waitRetry}, nil
		}
		if err := c.fixIdentity(ctx, set, p, ordinalOf(set, p), true); err != nil {
			return true, sdk.Result{}, err
		}
		deletes = append(deletes, p)
		if monotonic {
			break
		}
	}
	if len(deletes) == 0 {
		return false, sdk.Result{}, nil
	}
	return true, sdk.Result{}, c.deletePods(ctx, set, deletes)
}

// rollingUpdate deletes pods not at the update revision from the highest
// ordinal down to the partition, keeping at most maxUnavailable replicas
// unavailable; the next sync recreates them at the update revision.
func (c *controller) rollingUpdate(ctx context.Context, set *appsv1.StatefulSet, revs *revisions, replicas []*v1.Pod, now time.Time) (sdk.Result, error) {
	if set.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return sdk.Result{}, nil
	}
	minReady := set.Spec.MinReadySeconds
	unavailable := 0
	for _, p := range replicas {
		if !isHealthy(p, minReady, now) {
			unavailable++
		}
	}
	budget := maxUnavailable(set) - unavailable
	var deletes []*v1.Pod
	for i := len(replicas) - 1; i >= partitionOf(set) && len(deletes) < budget; i-- {
		p := replicas[i]
		if revisionOf(p) != revs.update.Name && !isTerminating(p) {
			deletes = append(deletes, p)
		}
	}
	if len(deletes) == 0 {
		if budget <= 0 {
			return sdk.Result{RequeueAfter: waitRetry}, nil
		}
		return sdk.Result{}, nil
	}
	return sdk.Result{}, c.deletePods(ctx, set, deletes)
}

// createPods creates the claims and pods of ordinals. An ordinal below the
// partition (or, with no partition, below the current replicas) is created
// at the current revision, the others at the update revision.
func (c *controller) createPods(ctx context.Context, set *appsv1.StatefulSet, revs *revisions, ordinals []int) error {
	key := keyOf(set)
	c.exp.ExpectCreations(key, len(ordinals))
	for i, ord := range ordinals {
		tmpl, rev := revs.updateTemplate, revs.update.Name
		ru := set.Spec.UpdateStrategy.RollingUpdate
		if set.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType &&
			((ru == nil && ord < startOrdinal(set)+int(set.Status.CurrentReplicas)) ||
				(ru != nil && ord < startOrdinal(set)+partitionOf(set))) {
			tmpl, rev = revs.currentTemplate, revs.current.Name
		}
		pod := newPod(set, tmpl, rev, ord)
		if err := c.createClaims(ctx, set, pod, ord); err != nil {
			c.failCreations(key, len(ordinals)-i)
			return err
		}
		created, err := c.client.CoreV1().Pods(set.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err == nil {
			c.fresh.WroteFor(set, podsCache, created.ResourceVersion)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			c.failCreations(key, len(ordinals)-i)
			c.events.Eventf(set, v1.EventTypeWarning, "FailedCreate", "create Pod %s in StatefulSet %s failed error: %v", pod.Name, set.Name, err)
			return fmt.Errorf("creating pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		if err != nil {
			c.exp.CreationObserved(key) // it exists: the cache will show it
			continue
		}
		c.events.Eventf(set, v1.EventTypeNormal, "SuccessfulCreate", "create Pod %s in StatefulSet %s successful", pod.Name, set.Name)
	}
	return nil
}

func (c *controller) failCreations(key string, n int) {
	for range n {
		c.exp.CreationObserved(key)
	}
}

// createClaims creates the pod's missing claims.
func (c *controller) createClaims(ctx context.Context, set *appsv1.StatefulSet, pod *v1.Pod, ordinal int) error {
	for i := range set.Spec.VolumeClaimTemplates {
		t := &set.Spec.VolumeClaimTemplates[i]
		claim := newClaim(set, t, ordinal)
		if _, ok, _ := c.claims.GetByKey(claim.Namespace + "/" + claim.Name); ok {
			continue
		}
		claim.OwnerReferences = wantOwners(set, claim, nil, false)
		created, err := c.client.CoreV1().PersistentVolumeClaims(set.Namespace).Create(ctx, claim, metav1.CreateOptions{})
		if err == nil {
			c.fresh.WroteFor(set, claimsCache, created.ResourceVersion)
		}
		if apierrors.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			c.events.Eventf(set, v1.EventTypeWarning, "FailedCreate", "create Claim %s for Pod %s in StatefulSet %s failed error: %v", claim.Name, pod.Name, set.Name, err)
			return fmt.Errorf("creating claim %s/%s: %w", claim.Namespace, claim.Name, err)
		}
		c.events.Eventf(set, v1.EventTypeNormal, "SuccessfulCreate", "create Claim %s Pod %s in StatefulSet %s success", claim.Name, pod.Name, set.Name)
	}
	return nil
}

// fixIdentity restores a pod's identity labels and its claims' owner
// references (the retention policy may have changed, or the pod is being
// scaled away).
func (c *controller) fixIdentity(ctx context.Context, set *appsv1.StatefulSet, p *v1.Pod, ordinal int, condemned bool) error {
	want := map[string]string{podNameLabel: p.Name, podIndexLabel: strconv.Itoa(ordinal)}
	missing := false
	for k, v := range want {
		if p.Labels[k] != v {
			missing = true
		}
	}
	if missing {
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q,%q:%q}}}`, podNameLabel, p.Name, podIndexLabel, strconv.Itoa(ordinal))
		patched, err := c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("restoring the identity labels of pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		if err == nil {
			c.fresh.WroteFor(set, podsCache, patched.ResourceVersion)
		}
	}
	for i := range set.Spec.VolumeClaimTemplates {
		t := &set.Spec.VolumeClaimTemplates[i]
		obj, ok, _ := c.claims.GetByKey(set.Namespace + "/" + claimName(t, set, ordinal))
		if !ok {
			if !condemned {
				if err := c.createClaims(ctx, set, p, ordinal); err != nil {
					return err
				}
			}
			continue
		}
		claim := obj.(*v1.PersistentVolumeClaim)
		refs := wantOwners(set, claim, p, condemned)
		if sameRefs(refs, claim.OwnerReferences) {
			continue
		}
		upd := claim.DeepCopy()
		upd.OwnerReferences = refs
		updated, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).Update(ctx, upd, metav1.UpdateOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("updating the owners of claim %s/%s: %w", claim.Namespace, claim.Name, err)
		}
		if err == nil {
			c.fresh.WroteFor(set, claimsCache, updated.ResourceVersion)
		}
	}
	return nil
}

func sameRefs(a, b []metav1.OwnerReference) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

func (c *controller) deletePods(ctx context.Context, set *appsv1.StatefulSet, ps []*v1.Pod) error {
	key := keyOf(set)
	keys := make([]string, 0, len(ps))
	for _, p := range ps {
		keys = append(keys, p.Namespace+"/"+p.Name)
	}
	c.exp.ExpectDeletions(key, keys)
	for _, p := range ps {
		uid := p.UID
		err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			c.exp.DeletionObserved(key, p.Namespace+"/"+p.Name)
			c.events.Eventf(set, v1.EventTypeWarning, "FailedDelete", "delete Pod %s in StatefulSet %s failed error: %v", p.Name, set.Name, err)
			return fmt.Errorf("deleting pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		if err != nil {
			c.exp.DeletionObserved(key, p.Namespace+"/"+p.Name)
			continue
		}
		c.events.Eventf(set, v1.EventTypeNormal, "SuccessfulDelete", "delete Pod %s in StatefulSet %s successful", p.Name, set.Name)
	}
	return nil
}
