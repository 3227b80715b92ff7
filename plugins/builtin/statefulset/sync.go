package statefulset

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/internal/history"
	"github.com/keelson/keelson/plugins/builtin/internal/ownership"
	"github.com/keelson/keelson/plugins/sdk"
)

// revisions is the pair a sync works between: pods below the partition
// (or not yet rolled) stay at current, the rest go to update.
type revisions struct {
	current, update                 *appsv1.ControllerRevision
	currentTemplate, updateTemplate *v1.PodTemplateSpec
	collisionCount                  int32
	all                             []*appsv1.ControllerRevision
}

func (c *controller) reconcile(ctx context.Context, key string) (sdk.Result, error) {
	if err := c.fresh.Ready(key); err != nil {
		return sdk.Result{}, err
	}
	obj, exists, err := c.sets.GetByKey(key)
	if err != nil {
		return sdk.Result{}, fmt.Errorf("reading statefulset %s from the cache: %w", key, err)
	}
	if !exists {
		c.exp.Delete(key)
		c.fresh.Forget(key)
		return sdk.Result{}, nil
	}
	set := obj.(*appsv1.StatefulSet)
	sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil {
		return sdk.Result{}, fmt.Errorf("statefulset %s: invalid spec.selector: %w", key, err)
	}
	members, err := c.claimPods(ctx, set, sel)
	if err != nil {
		return sdk.Result{}, err
	}
	revs, err := c.revisions(ctx, set, sel)
	if err != nil {
		return sdk.Result{}, err
	}
	var res sdk.Result
	if set.DeletionTimestamp == nil && c.exp.Satisfied(key) {
		if res, err = c.syncPods(ctx, set, revs, members); err != nil {
			return sdk.Result{}, err
		}
	}
	if err := c.truncateHistory(ctx, set, revs, members); err != nil {
		return sdk.Result{}, err
	}
	st := computeStatus(set, revs, members, c.clock.Now())
	if err := c.writeStatus(ctx, set, st); err != nil {
		return sdk.Result{}, err
	}
	if d := availabilityWait(set, members, c.clock.Now()); d > 0 && (res.RequeueAfter == 0 || d < res.RequeueAfter) {
		res.RequeueAfter = d
	}
	return res, nil
}

// claimPods returns the pods set controls (adopting matching orphans that
// are members by name, releasing those that stopped matching).
func (c *controller) claimPods(ctx context.Context, set *appsv1.StatefulSet, sel labels.Selector) ([]*v1.Pod, error) {
	var all []*v1.Pod
	for _, k := range []string{set.Namespace + "/" + string(set.UID), set.Namespace} {
		objs, err := c.pods.ByIndex(byController, k)
		if err != nil {
			return nil, fmt.Errorf("listing pods of statefulset %s/%s: %w", set.Namespace, set.Name, err)
		}
		for _, o := range objs {
			all = append(all, o.(*v1.Pod))
		}
	}
	patch := func(ctx context.Context, ns, name string, data []byte) error {
		p, err := c.client.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
		if err == nil {
			c.fresh.WroteFor(set, podsCache, p.ResourceVersion)
		}
		return err
	}
	claimer := ownership.NewClaimer(set, kind, c.recheck(set), patch)
	return ownership.Claim(ctx, claimer, all, func(p *v1.Pod) bool {
		return sel.Matches(labels.Set(p.Labels)) && ordinalOf(set, p) >= 0
	})
}

func (c *controller) recheck(set *appsv1.StatefulSet) func(context.Context) error {
	return ownership.Recheck(set.UID, func(ctx context.Context) (metav1.Object, error) {
		return c.client.AppsV1().StatefulSets(set.Namespace).Get(ctx, set.Name, metav1.GetOptions{})
	})
}

// revisions claims set's ControllerRevisions and returns the current and
// update revisions, creating the update revision if the template is new.
func (c *controller) revisions(ctx context.Context, set *appsv1.StatefulSet, sel labels.Selector) (*revisions, error) {
	var all []*appsv1.ControllerRevision
	for _, k := range []string{set.Namespace + "/" + string(set.UID), set.Namespace} {
		objs, err := c.revs.ByIndex(byController, k)
		if err != nil {
			return nil, fmt.Errorf("listing revisions of statefulset %s/%s: %w", set.Namespace, set.Name, err)
		}
		for _, o := range objs {
			all = append(all, o.(*appsv1.ControllerRevision))
		}
	}
	patch := func(ctx context.Context, ns, name string, data []byte) error {
		_, err := c.client.AppsV1().ControllerRevisions(ns).Patch(ctx, name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
		return err
	}
	owned, err := ownership.Claim(ctx, ownership.NewClaimer(set, kind, c.recheck(set), patch), all,
		func(r *appsv1.ControllerRevision) bool { return sel.Matches(labels.Set(r.Labels)) })
	if err != nil {
		return nil, err
	}
	history.Sort(owned)
	data, err := history.Patch(&set.Spec.Template)
	if err != nil {
		return nil, fmt.Errorf("statefulset %s/%s: %w", set.Namespace, set.Name, err)
	}
	cc := int32(0)
	if set.Status.CollisionCount != nil {
		cc = *set.Status.CollisionCount
	}
	upd, cc, err := history.Sync(ctx, c.client, history.Owner{Object: set, Kind: kind, Labels: set.Spec.Template.Labels, Data: data, CollisionCount: cc}, owned)
	if err != nil {
		return nil, err
	}
	r := &revisions{update: upd, current: upd, collisionCount: cc}
	for _, o := range owned {
		if o.Name == upd.Name {
			o = upd // renumbered
		}
		r.all = append(r.all, o)
		if o.Name == set.Status.CurrentRevision {
			r.current = o
		}
	}
	if !containsRev(r.all, upd.Name) {
		r.all = append(r.all, upd)
	}
	if r.updateTemplate, err = history.Template(r.update); err != nil {
		return nil, err
	}
	if r.currentTemplate, err = history.Template(r.current); err != nil {
		return nil, err
	}
	return r, nil
}

func containsRev(revs []*appsv1.ControllerRevision, name string) bool {
	for _, r := range revs {
		if r.Name == name {
			return true
		}
	}
	return false
}

// truncateHistory deletes unused revisions beyond revisionHistoryLimit.
func (c *controller) truncateHistory(ctx context.Context, set *appsv1.StatefulSet, revs *revisions, members []*v1.Pod) error {
	live := map[string]bool{revs.current.Name: true, revs.update.Name: true}
	for _, p := range members {
		live[revisionOf(p)] = true
	}
	limit := int32(10)
	if set.Spec.RevisionHistoryLimit != nil {
		limit = *set.Spec.RevisionHistoryLimit
	}
	history.Sort(revs.all)
	return history.Truncate(ctx, c.client, revs.all, live, limit)
}

func (c *controller) writeStatus(ctx context.Context, set *appsv1.StatefulSet, st appsv1.StatefulSetStatus) error {
	st.Conditions = set.Status.Conditions
	if equalStatus(set.Status, st) {
		return nil
	}
	upd := set.DeepCopy()
	upd.Status = st
	out, err := c.client.AppsV1().StatefulSets(set.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("updating status of statefulset %s/%s: %w", set.Namespace, set.Name, err)
	}
	c.fresh.WroteFor(set, setsCache, out.ResourceVersion)
	return nil
}

func equalStatus(a, b appsv1.StatefulSetStatus) bool {
	return a.ObservedGeneration == b.ObservedGeneration && a.Replicas == b.Replicas &&
		a.ReadyReplicas == b.ReadyReplicas && a.CurrentReplicas == b.CurrentReplicas &&
		a.UpdatedReplicas == b.UpdatedReplicas && a.AvailableReplicas == b.AvailableReplicas &&
		a.CurrentRevision == b.CurrentRevision && a.UpdateRevision == b.UpdateRevision &&
		ptrEq(a.CollisionCount, b.CollisionCount)
}

func ptrEq(a, b *int32) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func keyOf(set *appsv1.StatefulSet) string {
	return cache.NewObjectName(set.Namespace, set.Name).String()
}
