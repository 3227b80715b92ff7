package daemonset

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/plugins/builtin/internal/history"
	"github.com/keelson/keelson/plugins/builtin/internal/ownership"
	"github.com/keelson/keelson/plugins/builtin/internal/pods"
	"github.com/keelson/keelson/plugins/sdk"
)

func (c *controller) reconcile(ctx context.Context, key string) (sdk.Result, error) {
	if err := c.fresh.Ready(key); err != nil {
		return sdk.Result{}, err
	}
	obj, exists, err := c.sets.GetByKey(key)
	if err != nil {
		return sdk.Result{}, fmt.Errorf("reading daemonset %s from the cache: %w", key, err)
	}
	if !exists {
		c.exp.Delete(key)
		c.fresh.Forget(key)
		return sdk.Result{}, nil
	}
	ds := obj.(*appsv1.DaemonSet)
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return sdk.Result{}, fmt.Errorf("daemonset %s: invalid spec.selector: %w", key, err)
	}
	owned, err := c.claimPods(ctx, ds, sel)
	if err != nil {
		return sdk.Result{}, err
	}
	cur, cc, all, err := c.revisions(ctx, ds, sel)
	if err != nil {
		return sdk.Result{}, err
	}
	hash := cur.Labels[history.HashLabel]
	byNode := map[string][]*v1.Pod{}
	for _, p := range owned {
		byNode[targetNode(p)] = append(byNode[targetNode(p)], p)
	}
	nodes := c.listNodes()
	if ds.DeletionTimestamp == nil && c.exp.Satisfied(key) {
		creates, deletes := c.manage(ds, nodes, byNode)
		if len(creates) == 0 && len(deletes) == 0 && ds.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType {
			creates, deletes = c.rollingUpdate(ds, nodes, byNode, hash)
		}
		if err := c.syncNodes(ctx, ds, creates, deletes, hash); err != nil {
			return sdk.Result{}, err
		}
	}
	if err := c.truncateHistory(ctx, ds, all, cur, owned); err != nil {
		return sdk.Result{}, err
	}
	st := computeStatus(ds, nodes, byNode, hash, cc, c.clock.Now())
	if err := c.writeStatus(ctx, ds, st); err != nil {
		return sdk.Result{}, err
	}
	if ds.Spec.MinReadySeconds > 0 && st.NumberAvailable < st.NumberReady {
		return sdk.Result{RequeueAfter: secondsDuration(ds.Spec.MinReadySeconds)}, nil
	}
	return sdk.Result{}, nil
}

func (c *controller) listNodes() []*v1.Node {
	var out []*v1.Node
	for _, o := range c.nodes.List() {
		out = append(out, o.(*v1.Node))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (c *controller) claimPods(ctx context.Context, ds *appsv1.DaemonSet, sel labels.Selector) ([]*v1.Pod, error) {
	var all []*v1.Pod
	for _, k := range []string{ds.Namespace + "/" + string(ds.UID), ds.Namespace} {
		objs, err := c.pods.ByIndex(byController, k)
		if err != nil {
			return nil, fmt.Errorf("listing pods of daemonset %s/%s: %w", ds.Namespace, ds.Name, err)
		}
		for _, o := range objs {
			all = append(all, o.(*v1.Pod))
		}
	}
	patch := func(ctx context.Context, ns, name string, data []byte) error {
		p, err := c.client.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
		if err == nil {
			c.fresh.WroteFor(ds, podsCache, p.ResourceVersion)
		}
		return err
	}
	return ownership.Claim(ctx, ownership.NewClaimer(ds, kind, c.recheck(ds), patch), all,
		func(p *v1.Pod) bool { return sel.Matches(labels.Set(p.Labels)) })
}

func (c *controller) recheck(ds *appsv1.DaemonSet) func(context.Context) error {
	return ownership.Recheck(ds.UID, func(ctx context.Context) (metav1.Object, error) {
		return c.client.AppsV1().DaemonSets(ds.Namespace).Get(ctx, ds.Name, metav1.GetOptions{})
	})
}

// revisions returns ds's current revision (created if the template is
// new), its collision count and all its revisions, sorted.
func (c *controller) revisions(ctx context.Context, ds *appsv1.DaemonSet, sel labels.Selector) (*appsv1.ControllerRevision, int32, []*appsv1.ControllerRevision, error) {
	var all []*appsv1.ControllerRevision
	for _, k := range []string{ds.Namespace + "/" + string(ds.UID), ds.Namespace} {
		objs, err := c.revs.ByIndex(byController, k)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("listing revisions of daemonset %s/%s: %w", ds.Namespace, ds.Name, err)
		}
		for _, o := range objs {
			all = append(all, o.(*appsv1.ControllerRevision))
		}
	}
	patch := func(ctx context.Context, ns, name string, data []byte) error {
		_, err := c.client.AppsV1().ControllerRevisions(ns).Patch(ctx, name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
		return err
	}
	owned, err := ownership.Claim(ctx, ownership.NewClaimer(ds, kind, c.recheck(ds), patch), all,
		func(r *appsv1.ControllerRevision) bool { return sel.Matches(labels.Set(r.Labels)) })
	if err != nil {
		return nil, 0, nil, err
	}
	history.Sort(owned)
	data, err := history.Patch(&ds.Spec.Template)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("daemonset %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	cc := int32(0)
	if ds.Status.CollisionCount != nil {
		cc = *ds.Status.CollisionCount
	}
	cur, cc, err := history.Sync(ctx, c.client, history.Owner{Object: ds, Kind: kind, Labels: ds.Spec.Template.Labels, Data: data, CollisionCount: cc}, owned)
	if err != nil {
		return nil, 0, nil, err
	}
	var out []*appsv1.ControllerRevision
	for _, r := range owned {
		if r.Name != cur.Name {
			out = append(out, r)
		}
	}
	return cur, cc, append(out, cur), nil
}

func (c *controller) truncateHistory(ctx context.Context, ds *appsv1.DaemonSet, all []*appsv1.ControllerRevision, cur *appsv1.ControllerRevision, owned []*v1.Pod) error {
	inUse := map[string]bool{}
	for _, p := range owned {
		inUse[p.Labels[history.HashLabel]] = true
	}
	live := map[string]bool{cur.Name: true}
	for _, r := range all {
		if inUse[r.Labels[history.HashLabel]] {
			live[r.Name] = true
		}
	}
	limit := int32(10)
	if ds.Spec.RevisionHistoryLimit != nil {
		limit = *ds.Spec.RevisionHistoryLimit
	}
	return history.Truncate(ctx, c.client, all, live, limit)
}

// manage returns the nodes that need a daemon pod and the pods to delete:
// failed ones, extras beyond the oldest on a node (without surge), and
// those on nodes they may no longer run on.
func (c *controller) manage(ds *appsv1.DaemonSet, nodes []*v1.Node, byNode map[string][]*v1.Pod) (creates []string, deletes []*v1.Pod) {
	known := map[string]bool{}
	for _, node := range nodes {
		known[node.Name] = true
		run, stay := shouldRun(ds, node)
		var running []*v1.Pod
		for _, p := range byNode[node.Name] {
			if p.DeletionTimestamp != nil {
				continue
			}
			if p.Status.Phase == v1.PodFailed {
				c.events.Eventf(ds, v1.EventTypeWarning, "FailedDaemonPod", "Found failed daemon pod %s/%s on node %s, will try to kill it", p.Namespace, p.Name, node.Name)
				deletes = append(deletes, p)
				continue
			}
			running = append(running, p)
		}
		switch {
		case !stay:
			deletes = append(deletes, running...)
		case run && len(running) == 0:
			creates = append(creates, node.Name)
		case len(running) > 1 && surge(ds, len(nodes)) == 0:
			sort.Slice(running, func(i, j int) bool { return running[i].CreationTimestamp.Before(&running[j].CreationTimestamp) })
			deletes = append(deletes, running[1:]...)
		}
	}
	// Pods whose node is gone (the pod GC removes bound ones too).
	for name, ps := range byNode {
		if known[name] {
			continue
		}
		for _, p := range ps {
			if p.DeletionTimestamp == nil {
				deletes = append(deletes, p)
			}
		}
	}
	return creates, deletes
}

func (c *controller) syncNodes(ctx context.Context, ds *appsv1.DaemonSet, creates []string, deletes []*v1.Pod, hash string) error {
	if len(creates) > c.burst {
		creates = creates[:c.burst]
	}
	if len(deletes) > c.burst {
		deletes = deletes[:c.burst]
	}
	if len(creates) == 0 && len(deletes) == 0 {
		return nil
	}
	key := ds.Namespace + "/" + ds.Name
	keys := make([]string, 0, len(deletes))
	for _, p := range deletes {
		keys = append(keys, p.Namespace+"/"+p.Name)
	}
	c.exp.Expect(key, len(creates), keys)
	errs := parallel(len(deletes), func(i int) error { return c.removePod(ctx, ds, key, deletes[i]) })
	// Creations go in batches of doubling size (1, 2, 4, ...) so a template
	// the API refuses fails once, not for every node.
	for done, batch := 0, 1; done < len(creates); batch *= 2 {
		n := min(batch, len(creates)-done)
		chunk := creates[done : done+n]
		failed := parallel(n, func(i int) error { return c.createPod(ctx, ds, key, chunk[i], hash) })
		done += n
		if failed != nil {
			for range len(creates) - done {
				c.exp.CreationObserved(key)
			}
			errs = append(errs, failed...)
			break
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("daemonset %s: %w", key, errs[0])
	}
	return nil
}

func (c *controller) createPod(ctx context.Context, ds *appsv1.DaemonSet, key, node, hash string) error {
	p := &v1.Pod{ObjectMeta: *ds.Spec.Template.ObjectMeta.DeepCopy(), Spec: *ds.Spec.Template.Spec.DeepCopy()}
	p.Namespace, p.Name, p.GenerateName = ds.Namespace, "", ds.Name+"-"
	p.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(ds, kind)}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	p.Labels[history.HashLabel] = hash
	p.Labels[appsv1.DeprecatedTemplateGeneration] = strconv.FormatInt(ds.Generation, 10)
	p.Spec.Tolerations = podTolerations(&ds.Spec.Template.Spec)
	p.Spec.Affinity = nodeAffinity(p.Spec.Affinity, node)
	got, err := c.client.CoreV1().Pods(ds.Namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		c.exp.CreationObserved(key)
		if apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
			return nil
		}
		c.events.Eventf(ds, v1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return fmt.Errorf("creating a pod for node %s: %w", node, err)
	}
	c.fresh.WroteFor(ds, podsCache, got.ResourceVersion)
	c.events.Eventf(ds, v1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", got.Name)
	return nil
}

func (c *controller) removePod(ctx context.Context, ds *appsv1.DaemonSet, key string, p *v1.Pod) error {
	uid := p.UID
	err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil {
		c.exp.DeletionObserved(key, p.Namespace+"/"+p.Name)
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		c.events.Eventf(ds, v1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
		return fmt.Errorf("deleting pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	c.events.Eventf(ds, v1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
	return nil
}

func secondsDuration(s int32) time.Duration { return time.Duration(s) * time.Second }

func isAvailable(p *v1.Pod, minReady int32, now time.Time) bool {
	return p.DeletionTimestamp == nil && pods.IsAvailable(p, minReady, now)
}
