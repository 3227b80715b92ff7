// Package endpointslice is the EndpointSlice controller as a built-in
// plugin: for every Service with a selector it keeps EndpointSlices (owned
// by the Service, at most maxEndpointsPerSlice endpoints each, one set per
// IP family and per set of resolved ports) listing the selected pods with
// their ready, serving and terminating conditions, node and zone. Services
// without a selector are left alone (see endpointslicemirroring). It
// behaves like kube-controller-manager's endpointslice-controller, without
// topology-aware hints.
package endpointslice

import (
	"context"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/keelson/keelson/plugins/builtin/internal/servicepods"
	"github.com/keelson/keelson/plugins/builtin/internal/sliceset"
	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "endpointslice"

// controllerName is upstream's: the managed-by label value of the slices
// this controller owns. Events are recorded as endpoint-slice-controller.
const (
	controllerName = "endpointslice-controller.k8s.io"
	eventSource    = "endpoint-slice-controller"
)

// Config is the plugin's config section.
type Config struct {
	// Workers is how many Services are synced at once (default 5).
	Workers int `json:"workers"`
	// MaxEndpointsPerSlice caps each slice (default 100, at most 1000, like
	// kube-controller-manager's --max-endpoints-per-slice).
	MaxEndpointsPerSlice int `json:"maxEndpointsPerSlice"`
}

func (c Config) validate() error {
	if c.Workers < 1 {
		return sdk.ConfigErrorf("workers", "workers must be at least 1, got %d", c.Workers)
	}
	if c.MaxEndpointsPerSlice < 1 || c.MaxEndpointsPerSlice > 1000 {
		return sdk.ConfigErrorf("maxEndpointsPerSlice", "maxEndpointsPerSlice must be between 1 and 1000, got %d", c.MaxEndpointsPerSlice)
	}
	return nil
}

// Plugin returns the endpointslice plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, "0.1.0", setup, informers.WithTransform(transform))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "pods", "nodes"}, Verbs: []string{"get", "list", "watch"}},
		// Setting blockOwnerDeletion on a slice's owner reference to its
		// Service needs update on services/finalizers where the
		// OwnerReferencesPermissionEnforcement admission plugin is on.
		{APIGroups: []string{""}, Resources: []string{"services/finalizers"}, Verbs: []string{"update"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
		sdk.EventRule,
	}
	return p
}

// transform slims what this plugin caches: pods to what endpoints show,
// nodes to their labels.
func transform(obj any) (any, error) {
	if _, err := sdk.StripManagedFields(obj); err != nil {
		return nil, err
	}
	if n, ok := obj.(*corev1.Node); ok {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: n.Labels}}, nil
	}
	return servicepods.SlimPod(obj)
}

type controller struct {
	client   kubernetes.Interface
	services corelisters.ServiceLister
	pods     corelisters.PodLister
	nodes    corelisters.NodeLister
	slices   discoverylisters.EndpointSliceLister
	recorder record.EventRecorder
	queue    workqueue.TypedRateLimitingInterface[string]
	tracker  *sliceset.Tracker
	maxPer   int
	logger   *slog.Logger
}

func setup(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := Config{Workers: 5, MaxEndpointsPerSlice: 100}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &controller{
		client:   client,
		services: f.Core().V1().Services().Lister(),
		pods:     f.Core().V1().Pods().Lister(),
		nodes:    f.Core().V1().Nodes().Lister(),
		recorder: sdk.NewEventRecorder(ctx, client, eventSource),
		queue:    sdk.NewQueue[string](Name),
		tracker:  sliceset.NewTracker(),
		maxPer:   cfg.MaxEndpointsPerSlice,
		logger:   env.Logger,
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
	if _, err := f.Core().V1().Services().Informer().AddEventHandler(enqueue); err != nil {
		return fmt.Errorf("watching services: %w", err)
	}
	if _, err := f.Core().V1().Pods().Informer().AddEventHandler(servicepods.PodHandler(c.services, c.queue.Add, c.logger)); err != nil {
		return fmt.Errorf("watching pods: %w", err)
	}
	if _, err := f.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{}); err != nil {
		return fmt.Errorf("watching nodes: %w", err)
	}
	var err error
	if c.slices, err = sliceset.Watch(f, controllerName, c.tracker, c.queue.Add); err != nil {
		return fmt.Errorf("watching endpointslices: %w", err)
	}
	return nil
}

// servicesSlices returns the cached slices this controller manages for a
// Service, leaving out those already being deleted.
func (c *controller) servicesSlices(ns, name string) ([]*discoveryv1.EndpointSlice, error) {
	sel := labels.SelectorFromValidatedSet(labels.Set{discoveryv1.LabelServiceName: name})
	all, err := c.slices.EndpointSlices(ns).List(sel)
	if err != nil {
		return nil, err
	}
	out := all[:0:0]
	for _, s := range all {
		if s.DeletionTimestamp == nil {
			out = append(out, s)
		}
	}
	return out, nil
}

// PodTransform is the transform the plugin's informers run, pods among
// them (BenchmarkPodCacheBytes in plugins/builtin measures it).
var PodTransform = transform
