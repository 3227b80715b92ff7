//lint:file-ignore SA1019 v1 Endpoints are deprecated but still served and read; this controller keeps them (or mirrors them) on purpose.

package endpoints

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/internal/servicepods"
	"github.com/keelson/keelson/plugins/sdk"
)

// reconcile makes the Endpoints object of the Service key what its selected
// pods say it should be.
func (c *controller) reconcile(ctx context.Context, key string) (sdk.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return sdk.Result{}, nil // not a key we queued; nothing to retry
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// The Service is gone, so are its endpoints (whoever wrote them).
		c.stale.forget(key)
		err := c.client.CoreV1().Endpoints(ns).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return sdk.Result{}, fmt.Errorf("deleting endpoints %s of a deleted service: %w", key, err)
		}
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, err
	}
	if !servicepods.Selects(svc) {
		return sdk.Result{}, nil
	}
	pods, err := c.pods.Pods(ns).List(labels.SelectorFromValidatedSet(svc.Spec.Selector))
	if err != nil {
		return sdk.Result{}, err
	}
	current, err := c.endpoints.Endpoints(ns).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		current = nil
	case err != nil:
		return sdk.Result{}, err
	case c.stale.isStale(key, current.ResourceVersion):
		return sdk.Result{}, fmt.Errorf("endpoints %s: cache still holds resourceVersion %s, which this controller replaced", key, current.ResourceVersion)
	}
	want := desired(svc, pods, current)
	if current != nil && upToDate(current, want) {
		return sdk.Result{}, nil
	}
	return sdk.Result{}, c.write(ctx, svc, current, want)
}

// desired returns the Endpoints object svc should have: current (if any)
// with its subsets, labels and capacity annotation replaced.
func desired(svc *corev1.Service, pods []*corev1.Pod, current *corev1.Endpoints) *corev1.Endpoints {
	want := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace}}
	if current != nil {
		want = current.DeepCopy()
	}
	want.Subsets = desiredSubsets(svc, pods)
	want.Labels = maps.Clone(svc.Labels)
	if want.Labels == nil {
		want.Labels = map[string]string{}
	}
	if servicepods.HasClusterIP(svc) {
		delete(want.Labels, corev1.IsHeadlessService)
	} else {
		want.Labels[corev1.IsHeadlessService] = ""
	}
	want.Labels[labelManagedBy] = controllerName
	if want.Annotations == nil {
		want.Annotations = map[string]string{}
	}
	if truncate(want.Subsets) {
		want.Annotations[annotationOverCap] = overCapacityTruncate
	} else {
		delete(want.Annotations, annotationOverCap)
	}
	return want
}

func upToDate(current, want *corev1.Endpoints) bool {
	return equality.Semantic.DeepEqual(canonical(current.Subsets), want.Subsets) &&
		maps.Equal(current.Labels, want.Labels) &&
		current.Annotations[annotationOverCap] == want.Annotations[annotationOverCap]
}

func (c *controller) write(ctx context.Context, svc *corev1.Service, current, want *corev1.Endpoints) error {
	key := svc.Namespace + "/" + svc.Name
	api := c.client.CoreV1().Endpoints(svc.Namespace)
	if current == nil {
		_, err := api.Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			c.logger.Info("created endpoints", "service", key, "ready", countReady(want), "notReady", countNotReady(want))
			return nil
		}
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil // the namespace is going away; creates keep failing
		}
		if !apierrors.IsAlreadyExists(err) {
			c.recorder.Eventf(want, corev1.EventTypeWarning, "FailedToCreateEndpoint",
				"Failed to create endpoint for service %s: %v", key, err)
		}
		return fmt.Errorf("creating endpoints %s: %w", key, err)
	}
	updated, err := api.Update(ctx, want, metav1.UpdateOptions{})
	if err != nil {
		if !apierrors.IsConflict(err) {
			c.recorder.Eventf(want, corev1.EventTypeWarning, "FailedToUpdateEndpoint",
				"Failed to update endpoint %s: %v", key, err)
		}
		return fmt.Errorf("updating endpoints %s: %w", key, err)
	}
	if updated.ResourceVersion != current.ResourceVersion {
		c.stale.replaced(key, current.ResourceVersion)
	}
	c.logger.Info("updated endpoints", "service", key, "ready", countReady(want), "notReady", countNotReady(want))
	return nil
}

func countReady(ep *corev1.Endpoints) int {
	n := 0
	for _, s := range ep.Subsets {
		n += len(s.Addresses)
	}
	return n
}

func countNotReady(ep *corev1.Endpoints) int {
	n := 0
	for _, s := range ep.Subsets {
		n += len(s.NotReadyAddresses)
	}
	return n
}
