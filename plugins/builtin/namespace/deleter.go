package namespace

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/util/retry"

	"github.com/keelson/keelson/plugins/sdk"
)

// finalizerWaitSeconds is how long content held by finalizers is expected
// to take to go; the namespace is looked at again after about half of it.
const finalizerWaitSeconds = 15

var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// reconcile moves a deleted namespace one step towards being gone.
func (c *controller) reconcile(ctx context.Context, name string) (sdk.Result, error) {
	ns, err := c.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, fmt.Errorf("getting namespace %s: %w", name, err)
	}
	if ns.DeletionTimestamp == nil {
		return sdk.Result{}, nil
	}
	if ns, err = c.markTerminating(ctx, ns); err != nil || ns == nil {
		return sdk.Result{}, err
	}
	if len(ns.Spec.Finalizers) == 0 {
		return sdk.Result{}, nil // the API server deletes it
	}
	estimate, err := c.deleteAllContent(ctx, ns)
	if err != nil {
		return sdk.Result{}, err
	}
	if estimate > 0 {
		c.logger.Info("content remains in namespace", "namespace", name, "estimateSeconds", estimate)
		return sdk.Result{RequeueAfter: time.Duration(estimate/2+1) * time.Second}, nil
	}
	return sdk.Result{}, c.finalize(ctx, ns)
}

// markTerminating sets the Terminating phase the API server normally set
// already; it returns nil if the namespace is gone.
func (c *controller) markTerminating(ctx context.Context, ns *corev1.Namespace) (*corev1.Namespace, error) {
	var out *corev1.Namespace
	err := c.retryOnConflict(ctx, ns, func(cur *corev1.Namespace) error {
		if cur.Status.Phase == corev1.NamespaceTerminating {
			out = cur
			return nil
		}
		cur = cur.DeepCopy()
		cur.Status.Phase = corev1.NamespaceTerminating
		updated, err := c.client.CoreV1().Namespaces().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		out = updated
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("marking namespace %s terminating: %w", ns.Name, err)
	}
	return out, nil
}

// finalize removes this controller's finalizer; with no finalizer left the
// API server deletes the namespace.
func (c *controller) finalize(ctx context.Context, ns *corev1.Namespace) error {
	err := c.retryOnConflict(ctx, ns, func(cur *corev1.Namespace) error {
		if !slices.Contains(cur.Spec.Finalizers, finalizer) {
			return nil
		}
		cur = cur.DeepCopy()
		cur.Spec.Finalizers = slices.DeleteFunc(cur.Spec.Finalizers, func(f corev1.FinalizerName) bool { return f == finalizer })
		_, err := c.client.CoreV1().Namespaces().Finalize(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("finalizing namespace %s: %w", ns.Name, err)
	}
	c.logger.Info("namespace emptied and finalized", "namespace", ns.Name)
	return nil
}

// retryOnConflict runs fn on ns and, after a conflict, on the live
// namespace, as long as it is the same namespace (same UID).
func (c *controller) retryOnConflict(ctx context.Context, ns *corev1.Namespace, fn func(*corev1.Namespace) error) error {
	cur := ns
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		err := fn(cur)
		if !apierrors.IsConflict(err) {
			return err
		}
		latest, getErr := c.client.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		if getErr != nil {
			return getErr
		}
		if latest.UID != ns.UID {
			return apierrors.NewNotFound(corev1.Resource("namespaces"), ns.Name)
		}
		cur = latest
		return err
	})
}

// remaining is what is left of one resource after a deletion pass.
type remaining struct {
	estimate   int64          // seconds the content is expected to take to go
	count      int            // objects left
	finalizers map[string]int // objects left per finalizer
}

// deleteAllContent deletes every namespaced object in ns, pods first (other
// content waits until no pod is left, so controllers do not recreate what
// pods need), records the outcome in the namespace's conditions, and
// returns how many seconds what remains is expected to take to go.
func (c *controller) deleteAllContent(ctx context.Context, ns *corev1.Namespace) (int64, error) {
	var errs []error
	var conds conditions
	lists, err := c.discover()
	if err != nil {
		errs = append(errs, err)
		conds.discoveryFailed(err)
	}
	deletable := discovery.FilteredBy(discovery.SupportsAllVerbs{Verbs: []string{"delete"}}, lists)
	verbs, err := resourceVerbs(deletable)
	if err != nil {
		errs = append(errs, err)
		conds.groupVersionFailed(err)
	}
	left := map[schema.GroupVersionResource]remaining{}
	var estimate int64
	pass := func(gvr schema.GroupVersionResource) {
		r, err := c.deleteResource(ctx, gvr, verbs[gvr], ns)
		if err != nil {
			errs = append(errs, err)
			conds.deleteFailed(err)
		}
		estimate = max(estimate, r.estimate)
		if r.count > 0 {
			left[gvr] = r
		}
	}
	_, hasPods := verbs[podsGVR]
	if hasPods {
		pass(podsGVR)
	}
	if left[podsGVR].count == 0 {
		gvrs := make([]schema.GroupVersionResource, 0, len(verbs))
		for gvr := range verbs {
			if gvr != podsGVR {
				gvrs = append(gvrs, gvr)
			}
		}
		slices.SortFunc(gvrs, func(a, b schema.GroupVersionResource) int {
			return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Resource, b.Resource))
		})
		for _, gvr := range gvrs {
			pass(gvr)
		}
		conds.contentLeft(left)
	}
	if updated := conds.apply(&ns.Status, c.now()); updated {
		if _, err := c.client.CoreV1().Namespaces().UpdateStatus(ctx, ns, metav1.UpdateOptions{}); err != nil {
			c.logger.Warn("updating namespace conditions", "namespace", ns.Name, "error", err)
		}
	}
	return estimate, errors.Join(errs...)
}

// resourceVerbs maps every resource in lists to the verbs it supports.
func resourceVerbs(lists []*metav1.APIResourceList) (map[schema.GroupVersionResource][]string, error) {
	out := map[schema.GroupVersionResource][]string{}
	var errs []error
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			errs = append(errs, fmt.Errorf("parsing group version %q: %w", l.GroupVersion, err))
			continue
		}
		for _, r := range l.APIResources {
			out[gv.WithResource(r.Name)] = r.Verbs
		}
	}
	return out, errors.Join(errs...)
}

// deleteResource deletes every object of one resource in ns (one
// deletecollection where supported, else one by one) and reports what is
// left.
func (c *controller) deleteResource(ctx context.Context, gvr schema.GroupVersionResource, verbs []string, ns *corev1.Namespace) (remaining, error) {
	var r remaining
	if gvr == podsGVR {
		est, err := c.podsGracePeriod(ctx, ns)
		if err != nil {
			return r, fmt.Errorf("estimating pod termination in %s: %w", ns.Name, err)
		}
		r.estimate = est
	}
	api := c.metadata.Resource(gvr).Namespace(ns.Name)
	background := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &background}
	collection := slices.Contains(verbs, "deletecollection")
	if collection {
		err := api.DeleteCollection(ctx, opts, metav1.ListOptions{})
		switch {
		case apierrors.IsMethodNotSupported(err), apierrors.IsNotFound(err):
			collection = false
		case err != nil:
			return r, fmt.Errorf("deleting all %s in %s: %w", gvr.GroupResource(), ns.Name, err)
		}
	}
	if !slices.Contains(verbs, "list") {
		return r, nil
	}
	if !collection {
		items, err := api.List(ctx, metav1.ListOptions{})
		if err != nil && !apierrors.IsMethodNotSupported(err) && !apierrors.IsNotFound(err) {
			return r, fmt.Errorf("listing %s in %s: %w", gvr.GroupResource(), ns.Name, err)
		}
		for i := 0; err == nil && i < len(items.Items); i++ {
			derr := api.Delete(ctx, items.Items[i].Name, opts)
			if derr != nil && !apierrors.IsNotFound(derr) && !apierrors.IsMethodNotSupported(derr) {
				return r, fmt.Errorf("deleting %s %s/%s: %w", gvr.GroupResource(), ns.Name, items.Items[i].Name, derr)
			}
		}
	}
	items, err := api.List(ctx, metav1.ListOptions{})
	if apierrors.IsMethodNotSupported(err) || apierrors.IsNotFound(err) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("checking for %s left in %s: %w", gvr.GroupResource(), ns.Name, err)
	}
	r.count = len(items.Items)
	if r.count == 0 {
		return remaining{}, nil
	}
	r.finalizers = map[string]int{}
	for _, it := range items.Items {
		for _, f := range it.Finalizers {
			r.finalizers[f]++
		}
	}
	switch {
	case r.estimate > 0:
	case len(r.finalizers) > 0:
		r.estimate = finalizerWaitSeconds
	default:
		return r, fmt.Errorf("%d %s still in namespace %s after deletion", r.count, gvr.GroupResource(), ns.Name)
	}
	return r, nil
}

// podsGracePeriod is the longest termination grace period of the pods
// still running in ns, or 0 once that long has passed since the namespace
// was deleted.
func (c *controller) podsGracePeriod(ctx context.Context, ns *corev1.Namespace) (int64, error) {
	pods, err := c.client.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	var est int64
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if g := p.Spec.TerminationGracePeriodSeconds; g != nil {
			est = max(est, *g)
		}
	}
	if c.now().Sub(ns.DeletionTimestamp.Time) >= time.Duration(est)*time.Second {
		return 0, nil
	}
	return est, nil
}
