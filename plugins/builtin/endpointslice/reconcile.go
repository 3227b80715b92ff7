package endpointslice

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/internal/servicepods"
	"github.com/keelson/keelson/plugins/builtin/internal/sliceset"
	"github.com/keelson/keelson/plugins/sdk"
)

// reconcile makes the EndpointSlices of the Service key list what its
// selected pods say.
func (c *controller) reconcile(ctx context.Context, key string) (sdk.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return sdk.Result{}, nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// The garbage collector removes the slices the Service owned.
		c.tracker.Forget(key)
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
	existing, err := c.servicesSlices(ns, name)
	if err != nil {
		return sdk.Result{}, err
	}
	if c.tracker.Stale(key, existing) {
		return sdk.Result{}, fmt.Errorf("endpointslices of service %s: cache is older than this controller's last write", key)
	}
	p, skipped := computePlan(svc, pods, existing, c.nodeZone, c.maxPer)
	// Pods skipped for an unknown node are retried like failures (the node
	// may be registering) and reported the same way, as upstream does.
	if err := errors.Join(append(skipped, c.apply(ctx, svc, p))...); err != nil {
		c.recorder.Eventf(svc, corev1.EventTypeWarning, "FailedToUpdateEndpointSlices",
			"Error updating Endpoint Slices for Service %s: %v", key, err)
		return sdk.Result{}, err
	}
	return sdk.Result{}, nil
}

func (c *controller) nodeZone(name string) (*string, bool) {
	n, err := c.nodes.Get(name)
	if err != nil {
		return nil, false
	}
	if z, ok := n.Labels[corev1.LabelTopologyZone]; ok && z != "" {
		return &z, true
	}
	return nil, true
}

// apply writes p: creates (unless the Service is being deleted, when the
// garbage collector would race them), updates, then deletes.
func (c *controller) apply(ctx context.Context, svc *corev1.Service, p sliceset.Changes) error {
	key := svc.Namespace + "/" + svc.Name
	api := c.client.DiscoveryV1().EndpointSlices(svc.Namespace)
	if svc.DeletionTimestamp == nil {
		for _, s := range p.Create {
			created, err := api.Create(ctx, s, metav1.CreateOptions{})
			if err != nil {
				if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
					return nil
				}
				return fmt.Errorf("creating an EndpointSlice for service %s: %w", key, err)
			}
			c.tracker.Wrote(key, created)
			c.logger.Info("created endpointslice", "service", key, "slice", created.Name, "addressType", created.AddressType, "endpoints", len(created.Endpoints))
		}
	}
	for _, s := range p.Update {
		updated, err := api.Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("updating EndpointSlice %s for service %s: %w", s.Name, key, err)
		}
		c.tracker.Wrote(key, updated)
		c.logger.Info("updated endpointslice", "service", key, "slice", s.Name, "endpoints", len(s.Endpoints))
	}
	for _, s := range p.Delete {
		err := api.Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting EndpointSlice %s for service %s: %w", s.Name, key, err)
		}
		c.tracker.Deleted(key, s)
		c.logger.Info("deleted endpointslice", "service", key, "slice", s.Name)
	}
	return nil
}
