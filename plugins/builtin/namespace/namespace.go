// Package namespace is the namespace lifecycle controller as a built-in
// plugin: when a namespace is deleted it marks it Terminating, deletes
// everything in it (pods first, then every other namespaced kind the API
// serves, custom resources included), reports what still blocks it in the
// namespace's conditions, and, once nothing is left, removes its
// "kubernetes" finalizer so the API server deletes it. It behaves like
// kube-controller-manager's namespace-controller.
package namespace

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "namespace"

// finalizer is the spec.finalizers entry this controller owns.
const finalizer = corev1.FinalizerKubernetes

// deletionGracePeriod delays acting on a deleted namespace so that every
// API server has seen it terminating (and refuses new objects in it)
// before its content is listed for deletion.
const deletionGracePeriod = 5 * time.Second

// Config is the plugin's config section.
type Config struct {
	// Workers is how many namespaces are emptied at once (default 5).
	Workers int `json:"workers"`
}

// Plugin returns the namespace plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, "0.1.0", setup, informers.WithTransform(sdk.StripManagedFields))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces/finalize", "namespaces/status"}, Verbs: []string{"update"}},
		{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch", "delete", "deletecollection"}},
	}
	return sdk.IgnoreAPIWarnings(p)
}

type controller struct {
	client   kubernetes.Interface
	metadata metadata.Interface
	// discover lists the preferred version of every namespaced resource.
	discover func() ([]*metav1.APIResourceList, error)
	queue    workqueue.TypedRateLimitingInterface[string]
	logger   *slog.Logger
	now      func() time.Time
}

func setup(_ context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := Config{Workers: 5}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if cfg.Workers < 1 {
		return nil, sdk.ConfigErrorf("workers", "workers must be at least 1, got %d", cfg.Workers)
	}
	md, err := metadata.NewForConfig(env.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("building metadata client: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(env.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("building discovery client: %w", err)
	}
	c := &controller{
		client:   client,
		metadata: md,
		discover: disco.ServerPreferredNamespacedResources,
		queue:    sdk.NewQueue[string](Name),
		logger:   env.Logger,
		now:      time.Now,
	}
	enqueue := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.DeletionTimestamp != nil {
			c.queue.AddAfter(ns.Name, deletionGracePeriod)
		}
	}
	if _, err := f.Core().V1().Namespaces().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watching namespaces: %w", err)
	}
	return func(ctx context.Context) error {
		sdk.RunWorkers(ctx, c.queue, cfg.Workers, c.reconcile, c.logger)
		return nil
	}, nil
}
