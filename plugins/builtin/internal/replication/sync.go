package replication

import (
	"context"
	"errors"
	"fmt"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/internal/ownership"
	"github.com/keelson/keelson/plugins/builtin/internal/pods"
)

// Event reasons, as kube-controller-manager writes them.
const (
	reasonSuccessfulCreate = "SuccessfulCreate"
	reasonFailedCreate     = "FailedCreate"
	reasonSuccessfulDelete = "SuccessfulDelete"
	reasonFailedDelete     = "FailedDelete"
)

// sync reconciles the owner named key: claim pods, create or delete the
// difference (unless earlier creations/deletions are still unobserved),
// then write status.
func (c *Controller) sync(ctx context.Context, key string) error {
	if err := c.fresh.Ready(key); err != nil {
		return err
	}
	obj, exists, err := c.owners.GetIndexer().GetByKey(key)
	if err != nil {
		return fmt.Errorf("reading %s from the cache: %w", key, err)
	}
	if !exists {
		c.exp.Delete(key)
		c.fresh.Forget(key)
		return nil
	}
	cached, ok := c.kind.View(obj)
	if !ok {
		return fmt.Errorf("cached %s is a %T", key, obj)
	}
	rs := cached.DeepCopy()
	log := c.logger.With("key", key)
	selector, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		// API validation makes this unreachable; retrying cannot fix it.
		log.Error("invalid selector; not reconciling", "error", err)
		return nil
	}
	// Read expectations before the pods: a pod observed in between then
	// shows up in the list rather than being created a second time.
	canManage := c.exp.Satisfied(key)
	candidates, err := c.podsOwnedOrOrphaned(rs)
	if err != nil {
		return err
	}
	active, err := c.claimPods(ctx, key, rs, selector, filter(candidates, pods.IsActive))
	if err != nil {
		return err
	}
	var terminating []*v1.Pod
	if c.kind.TerminatingReplicas {
		terminating = filter(candidates, func(p *v1.Pod) bool {
			return pods.IsTerminating(p) && metav1.IsControlledBy(p, rs) && selector.Matches(labels.Set(p.Labels))
		})
	}
	var manageErr error
	if canManage && rs.DeletionTimestamp == nil {
		manageErr = c.manageReplicas(ctx, key, active, rs)
	}
	now := c.clock.Now()
	status := calculateStatus(rs, active, terminating, manageErr, c.kind.TerminatingReplicas, now)
	updated, err := c.updateStatus(ctx, key, rs, status)
	if err != nil {
		return errors.Join(manageErr, err)
	}
	if manageErr != nil {
		return manageErr
	}
	if updated.Spec.MinReadySeconds > 0 && updated.Status.ReadyReplicas != updated.Status.AvailableReplicas {
		wait := pods.NextAvailabilityCheck(active, updated.Spec.MinReadySeconds, now, c.clock.Now())
		if wait == nil {
			d := secondsDuration(updated.Spec.MinReadySeconds)
			wait = &d
		}
		c.loop.AddAfter(key, *wait)
	}
	return nil
}

// podsOwnedOrOrphaned returns the cached pods rs controls and the orphans
// in its namespace (which it may adopt).
func (c *Controller) podsOwnedOrOrphaned(rs *appsv1.ReplicaSet) ([]*v1.Pod, error) {
	ref := &metav1.OwnerReference{Kind: c.kind.GVK.Kind, Name: rs.Name, UID: rs.UID}
	var out []*v1.Pod
	for _, k := range []string{podControllerKey(rs.Namespace, ref), podControllerKey(rs.Namespace, nil)} {
		objs, err := c.pods.GetIndexer().ByIndex(byController, k)
		if err != nil {
			return nil, fmt.Errorf("listing pods of %s/%s: %w", rs.Namespace, rs.Name, err)
		}
		for _, o := range objs {
			out = append(out, o.(*v1.Pod))
		}
	}
	return out, nil
}

func (c *Controller) claimPods(ctx context.Context, key string, rs *appsv1.ReplicaSet, selector labels.Selector, candidates []*v1.Pod) ([]*v1.Pod, error) {
	canAdopt := ownership.Recheck(rs.UID, func(ctx context.Context) (metav1.Object, error) {
		return c.kind.Get(ctx, c.client, rs.Namespace, rs.Name)
	})
	patch := func(ctx context.Context, namespace, name string, data []byte) error {
		p, err := c.client.CoreV1().Pods(namespace).Patch(ctx, name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
		if err == nil {
			c.fresh.Wrote(key, rs.UID, podsCache, p.ResourceVersion)
		}
		return err
	}
	claimer := ownership.NewClaimer(rs, c.kind.GVK, canAdopt, patch)
	return ownership.Claim(ctx, claimer, candidates, func(p *v1.Pod) bool {
		return selector.Matches(labels.Set(p.Labels))
	})
}

// manageReplicas creates or deletes pods so that active has
// .spec.replicas pods, at most BurstReplicas in one call.
func (c *Controller) manageReplicas(ctx context.Context, key string, active []*v1.Pod, rs *appsv1.ReplicaSet) error {
	diff := len(active) - int(replicasOf(rs))
	switch {
	case diff < 0:
		n := min(-diff, c.cfg.BurstReplicas)
		c.logger.Debug("too few replicas", "key", key, "want", replicasOf(rs), "creating", n)
		return c.createPods(ctx, key, rs, n)
	case diff > 0:
		n := min(diff, c.cfg.BurstReplicas)
		c.logger.Debug("too many replicas", "key", key, "want", replicasOf(rs), "deleting", n)
		return c.deletePods(ctx, key, rs, podsToDelete(active, c.relatedPods(rs), n, c.clock.Now()))
	}
	return nil
}

// createPods creates n pods in slow-start batches (1, 2, 4, ...): when
// creation fails (quota, admission) it stops after the first failing
// batch instead of sending n doomed requests and n warning events.
func (c *Controller) createPods(ctx context.Context, key string, rs *appsv1.ReplicaSet, n int) error {
	c.exp.ExpectCreations(key, n)
	created, err := slowStart(n, func() error { return c.createPod(ctx, key, rs) })
	// The informer will never show the pods that were not created.
	for range n - created {
		c.exp.CreationObserved(key)
	}
	return err
}

func (c *Controller) createPod(ctx context.Context, key string, rs *appsv1.ReplicaSet) error {
	pod := podFromTemplate(rs, c.kind.GVK)
	if len(pod.Labels) == 0 {
		return fmt.Errorf("cannot create pods for %s: the pod template has no labels", key)
	}
	created, err := c.client.CoreV1().Pods(rs.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		if apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
			return nil // every create would fail the same way; the namespace goes anyway
		}
		c.events.Eventf(c.eventRef(rs), v1.EventTypeWarning, reasonFailedCreate, "Error creating: %v", err)
		return fmt.Errorf("creating a pod for %s: %w", key, err)
	}
	c.fresh.Wrote(key, rs.UID, podsCache, created.ResourceVersion)
	c.events.Eventf(c.eventRef(rs), v1.EventTypeNormal, reasonSuccessfulCreate, "Created pod: %v", created.Name)
	return nil
}

func (c *Controller) deletePods(ctx context.Context, key string, rs *appsv1.ReplicaSet, victims []*v1.Pod) error {
	keys := make([]string, len(victims))
	for i, p := range victims {
		keys[i] = podKey(p)
	}
	// Recorded before deleting: the deletion may be observed before the
	// delete call returns.
	c.exp.ExpectDeletions(key, keys)
	errs := make([]error, len(victims))
	var wg sync.WaitGroup
	for i, p := range victims {
		wg.Go(func() {
			err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
			switch {
			case err == nil:
				c.events.Eventf(c.eventRef(rs), v1.EventTypeNormal, reasonSuccessfulDelete, "Deleted pod: %v", p.Name)
				return
			case apierrors.IsNotFound(err):
			default:
				c.events.Eventf(c.eventRef(rs), v1.EventTypeWarning, reasonFailedDelete, "Error deleting: %v", err)
				errs[i] = fmt.Errorf("deleting pod %s of %s: %w", p.Name, key, err)
			}
			// No deletion event will come for this pod from us.
			c.exp.DeletionObserved(key, podKey(p))
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err // they are most likely all the same
		}
	}
	return nil
}

// relatedPods returns the pods of every ReplicaSet that has the same
// controller as rs (its Deployment's other ReplicaSets): where they run
// decides which of rs's pods are deleted first.
func (c *Controller) relatedPods(rs *appsv1.ReplicaSet) []*v1.Pod {
	ref := metav1.GetControllerOfNoCopy(rs)
	if ref == nil {
		return nil
	}
	siblings, err := c.owners.GetIndexer().ByIndex(byOwnerController, string(ref.UID))
	if err != nil {
		return nil
	}
	nsPods, err := c.pods.GetIndexer().ByIndex(cache.NamespaceIndex, rs.Namespace)
	if err != nil {
		return nil
	}
	seen := map[types.UID]bool{}
	var out []*v1.Pod
	for _, obj := range siblings {
		sib, ok := c.kind.View(obj)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(sib.Spec.Selector)
		if err != nil {
			continue
		}
		for _, o := range nsPods {
			p := o.(*v1.Pod)
			if !seen[p.UID] && sel.Matches(labels.Set(p.Labels)) {
				seen[p.UID] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// eventRef names the owner in Events with its own kind (a
// ReplicationController, not the ReplicaSet shape it is handled in).
func (c *Controller) eventRef(rs *appsv1.ReplicaSet) *v1.ObjectReference {
	return &v1.ObjectReference{
		Kind:            c.kind.GVK.Kind,
		APIVersion:      c.kind.GVK.GroupVersion().String(),
		Namespace:       rs.Namespace,
		Name:            rs.Name,
		UID:             rs.UID,
		ResourceVersion: rs.ResourceVersion,
	}
}

// podFromTemplate is the pod rs creates: the template's labels,
// annotations, finalizers and spec, a name generated from rs's, and rs as
// its controller.
func podFromTemplate(rs *appsv1.ReplicaSet, kind schema.GroupVersionKind) *v1.Pod {
	t := &rs.Spec.Template
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    generateNamePrefix(rs.Name),
			Labels:          copyMap(t.Labels),
			Annotations:     copyMap(t.Annotations),
			Finalizers:      append([]string(nil), t.Finalizers...),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, kind)},
		},
		Spec: *t.Spec.DeepCopy(),
	}
	return pod
}

// generateNamePrefix is "name-", or name alone when the dash would make an
// invalid pod name prefix.
func generateNamePrefix(name string) string {
	prefix := name + "-"
	if len(apivalidation.NameIsDNSSubdomain(prefix, true)) != 0 {
		return name
	}
	return prefix
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func filter(ps []*v1.Pod, keep func(*v1.Pod) bool) []*v1.Pod {
	var out []*v1.Pod
	for _, p := range ps {
		if keep(p) {
			out = append(out, p)
		}
	}
	return out
}

// slowStart calls fn count times in batches of 1, 2, 4, ..., the calls of
// a batch in parallel, and stops after the first batch with a failure. It
// returns how many calls succeeded and one of the errors.
func slowStart(count int, fn func() error) (int, error) {
	done := 0
	for batch := min(count, 1); batch > 0; batch = min(2*batch, count-done) {
		errs := make(chan error, batch)
		var wg sync.WaitGroup
		for range batch {
			wg.Go(func() {
				if err := fn(); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		failed := len(errs)
		done += batch - failed
		if failed > 0 {
			return done, <-errs
		}
	}
	return done, nil
}
