//lint:file-ignore SA1019 v1 Endpoints are deprecated but still served and read; this controller keeps them (or mirrors them) on purpose.

// Package endpointslicemirroring is the EndpointSlice mirroring controller
// as a built-in plugin: the Endpoints of a Service without a selector
// (written by hand or by another controller) are mirrored into
// EndpointSlices owned by that Endpoints object, so consumers that read
// only slices (service proxies, DNS) see them too. It behaves like
// kube-controller-manager's endpointslicemirroring-controller.
package endpointslicemirroring

import (
	"context"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/keelson/keelson/plugins/builtin/internal/sliceset"
	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "endpointslicemirroring"

// controllerName is upstream's managed-by value for mirrored slices and the
// source of this controller's Events.
const (
	controllerName = "endpointslicemirroring-controller.k8s.io"
	eventSource    = "endpoint-slice-mirroring-controller"
)

// Config is the plugin's config section.
type Config struct {
	// Workers is how many Endpoints objects are mirrored at once (default 5).
	Workers int `json:"workers"`
	// MaxEndpointsPerSubset caps how many addresses of one Endpoints subset
	// are mirrored (default 1000, like kube-controller-manager's
	// --mirroring-max-endpoints-per-subset); the rest are reported in an
	// Event.
	MaxEndpointsPerSubset int `json:"maxEndpointsPerSubset"`
}

// Plugin returns the endpointslicemirroring plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, "0.1.0", setup, informers.WithTransform(sdk.StripManagedFields))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "endpoints"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"endpoints/finalizers"}, Verbs: []string{"update"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
		sdk.EventRule,
	}
	return sdk.IgnoreAPIWarnings(p)
}

type controller struct {
	client    kubernetes.Interface
	services  corelisters.ServiceLister
	endpoints corelisters.EndpointsLister
	slices    discoverylisters.EndpointSliceLister
	recorder  record.EventRecorder
	queue     workqueue.TypedRateLimitingInterface[string]
	tracker   *sliceset.Tracker
	maxPer    int
	logger    *slog.Logger
}

func setup(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := Config{Workers: 5, MaxEndpointsPerSubset: 1000}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if cfg.Workers < 1 {
		return nil, sdk.ConfigErrorf("workers", "workers must be at least 1, got %d", cfg.Workers)
	}
	if cfg.MaxEndpointsPerSubset < 1 {
		return nil, sdk.ConfigErrorf("maxEndpointsPerSubset", "maxEndpointsPerSubset must be at least 1, got %d", cfg.MaxEndpointsPerSubset)
	}
	c := &controller{
		client:    client,
		services:  f.Core().V1().Services().Lister(),
		endpoints: f.Core().V1().Endpoints().Lister(),
		recorder:  sdk.NewEventRecorder(ctx, client, eventSource),
		queue:     sdk.NewQueue[string](Name),
		tracker:   sliceset.NewTracker(),
		maxPer:    cfg.MaxEndpointsPerSubset,
		logger:    env.Logger,
	}
	if err := c.register(f); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		sdk.RunWorkers(ctx, c.queue, cfg.Workers, c.reconcile, c.logger)
		return nil
	}, nil
}

func (c *controller) register(f informers.SharedInformerFactory) error {
	enqueue := sdk.EnqueueObjects(c.queue)
	// A Service event matters when it gains or loses its selector, or
	// appears or goes; Endpoints and slice events always do.
	if _, err := f.Core().V1().Services().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue.AddFunc,
		UpdateFunc: func(oldObj, newObj any) {
			o, n := oldObj.(*corev1.Service), newObj.(*corev1.Service)
			if (o.Spec.Selector == nil) != (n.Spec.Selector == nil) {
				enqueue.OnUpdate(oldObj, newObj)
			}
		},
		DeleteFunc: enqueue.DeleteFunc,
	}); err != nil {
		return fmt.Errorf("watching services: %w", err)
	}
	if _, err := f.Core().V1().Endpoints().Informer().AddEventHandler(enqueue); err != nil {
		return fmt.Errorf("watching endpoints: %w", err)
	}
	var err error
	if c.slices, err = sliceset.Watch(f, controllerName, c.tracker, c.queue.Add); err != nil {
		return fmt.Errorf("watching endpointslices: %w", err)
	}
	return nil
}

// shouldMirror leaves out Endpoints labelled to skip mirroring and those
// used as leader-election locks.
func shouldMirror(ep *corev1.Endpoints) bool {
	if ep.Labels[discoveryv1.LabelSkipMirror] == "true" {
		return false
	}
	_, lock := ep.Annotations[resourcelock.LeaderElectionRecordAnnotationKey]
	return !lock
}

// mirrored returns the cached slices mirrored for the Endpoints ns/name.
func (c *controller) mirrored(ns, name string) ([]*discoveryv1.EndpointSlice, error) {
	return c.slices.EndpointSlices(ns).List(labels.SelectorFromValidatedSet(labels.Set{discoveryv1.LabelServiceName: name}))
}
