//lint:file-ignore SA1019 v1 Endpoints are deprecated but still served and read; this controller keeps them (or mirrors them) on purpose.

// Package endpoints is the endpoints controller as a built-in plugin: it
// keeps an Endpoints object, named like its Service, listing the ready and
// not-ready addresses of the pods every Service with a selector selects,
// on each service port (named target ports resolved pod by pod). Services
// without a selector are left alone: their Endpoints are written by hand or
// by another controller. It behaves like kube-controller-manager's
// endpoint-controller.
package endpoints

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/keelson/keelson/plugins/builtin/internal/servicepods"
	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "endpoints"

// controllerName is upstream's: the source of the Events this controller
// records and the value of the managed-by label on the Endpoints it writes.
const controllerName = "endpoint-controller"

// Labels and annotations upstream's controller sets.
const (
	labelManagedBy       = "endpoints.kubernetes.io/managed-by"
	annotationOverCap    = corev1.EndpointsOverCapacity
	overCapacityTruncate = "truncated"
)

// Config is the plugin's config section.
type Config struct {
	// Workers is how many Services are synced at once (default 5, like
	// kube-controller-manager's --concurrent-endpoint-syncs).
	Workers int `json:"workers"`
}

// PodTransform is the transform the plugin's informers run: pods keep
// what servicepods.SlimPod keeps, other objects lose their managedFields.
func PodTransform(obj any) (any, error) {
	if _, err := sdk.StripManagedFields(obj); err != nil {
		return nil, err
	}
	return servicepods.SlimPod(obj)
}

// Plugin returns the endpoints plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, "0.1.0", setup, informers.WithTransform(PodTransform))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"endpoints"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"endpoints/restricted"}, Verbs: []string{"create"}},
		sdk.EventRule,
	}
	return sdk.IgnoreAPIWarnings(p)
}

type controller struct {
	client    kubernetes.Interface
	services  corelisters.ServiceLister
	pods      corelisters.PodLister
	endpoints corelisters.EndpointsLister
	recorder  record.EventRecorder
	queue     workqueue.TypedRateLimitingInterface[string]
	stale     staleTracker
	logger    *slog.Logger
}

func setup(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := Config{Workers: 5}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if cfg.Workers < 1 {
		return nil, sdk.ConfigErrorf("workers", "workers must be at least 1, got %d", cfg.Workers)
	}
	c := &controller{
		client:    client,
		services:  f.Core().V1().Services().Lister(),
		pods:      f.Core().V1().Pods().Lister(),
		endpoints: f.Core().V1().Endpoints().Lister(),
		recorder:  sdk.NewEventRecorder(ctx, client, controllerName),
		queue:     sdk.NewQueue[string](Name),
		stale:     staleTracker{rv: map[string]string{}},
		logger:    env.Logger,
	}
	if err := c.register(f); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		c.queueLeftovers()
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
	// A deleted Endpoints object of a selecting Service is recreated.
	if _, err := f.Core().V1().Endpoints().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: enqueue.DeleteFunc}); err != nil {
		return fmt.Errorf("watching endpoints: %w", err)
	}
	return nil
}

// queueLeftovers queues every Endpoints object once at start, so that those
// whose Service was deleted while no controller ran are removed. Endpoints
// used as leader-election locks have no Service and are skipped.
func (c *controller) queueLeftovers() {
	all, err := c.endpoints.List(labels.Everything())
	if err != nil {
		c.logger.Warn("listing endpoints for leftover cleanup", "error", err)
		return
	}
	for _, ep := range all {
		if _, lock := ep.Annotations[resourcelock.LeaderElectionRecordAnnotationKey]; lock {
			continue
		}
		c.queue.Add(ep.Namespace + "/" + ep.Name)
	}
}

// staleTracker remembers, per Endpoints object, the resourceVersion this
// controller replaced: until the cache shows a newer one, acting on the
// cached object would undo (or conflict with) our own last write.
type staleTracker struct {
	mu sync.Mutex
	rv map[string]string
}

func (s *staleTracker) replaced(key, rv string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rv[key] = rv
}

func (s *staleTracker) isStale(key, rv string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rv[key] == rv
}

func (s *staleTracker) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rv, key)
}
