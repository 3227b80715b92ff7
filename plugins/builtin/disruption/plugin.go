// Package disruption is the built-in disruption controller plugin: it keeps
// the status of every PodDisruptionBudget (currentHealthy, desiredHealthy,
// expectedPods, disruptionsAllowed, observedGeneration, the
// DisruptionAllowed condition and the disruptedPods bookkeeping) as
// kube-controller-manager's disruption controller does, which is what
// kube-apiserver's eviction subresource (`kubectl drain`) and the
// scheduler's preemption decide by. The number of pods a percentage or a
// maxUnavailable is taken of comes from the scale of the pods' controllers:
// Deployments, ReplicaSets, StatefulSets and ReplicationControllers from
// caches, any other kind (a custom resource) through its /scale
// subresource. It also resets DisruptionTarget conditions that were set on
// pods which were then not deleted (an eviction whose delete failed).
//
// unhealthyPodEvictionPolicy needs nothing here: kube-apiserver's eviction
// subresource applies it to the status this plugin writes.
package disruption

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin disruption`).
const Name = "disruption"

const (
	version = "0.1.0"
	// component is the event source upstream's disruption controller uses.
	component = "controllermanager"

	// DeletionTimeout is how long a pod the eviction subresource listed in
	// status.disruptedPods is expected to take to be marked for deletion;
	// after that the entry is dropped and the pod counts as healthy again.
	DeletionTimeout = 2 * time.Minute
	// staleDisruptionTimeout is how long a pod may carry a True
	// DisruptionTarget condition without being deleted before the
	// condition is reset to False.
	staleDisruptionTimeout = 2 * time.Minute
)

// Config is the plugin's configuration section.
type Config struct {
	// Workers is how many PodDisruptionBudgets are synced at once (default
	// 1, as kube-controller-manager's --concurrent-disruption-syncs).
	Workers int `json:"workers"`
}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, version, setup, informers.WithTransform(transform))
	// Upstream's disruption-controller role.
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{"policy"}, Resources: []string{"poddisruptionbudgets"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"policy"}, Resources: []string{"poddisruptionbudgets/status"}, Verbs: []string{"update"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"update"}},
		{APIGroups: []string{""}, Resources: []string{"replicationcontrollers"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets", "deployments", "statefulsets"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"*"}, Resources: []string{"*/scale"}, Verbs: []string{"get"}},
		sdk.EventRule,
	}
	return p
}

// controller syncs PodDisruptionBudgets (queue) and clears stale
// DisruptionTarget conditions of pods (stale).
type controller struct {
	client kubernetes.Interface
	pdbs   cache.Indexer
	pods   cache.Indexer
	// The controllers whose scale the caches answer.
	rcs, rss, deps, sets cache.Indexer
	// scales reads the scale of any other controller kind.
	scales *scaleReader
	queue  workqueue.TypedRateLimitingInterface[string]
	stale  workqueue.TypedRateLimitingInterface[string]
	events record.EventRecorder
	clock  clock.Clock
	logger *slog.Logger
}

func setup(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := Config{Workers: 1}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if cfg.Workers < 1 || cfg.Workers > 64 {
		return nil, sdk.ConfigErrorf("workers", "workers is %d: set it between 1 and 64", cfg.Workers)
	}
	scales, err := newScaleReader(env.RESTConfig)
	if err != nil {
		return nil, err
	}
	c, err := newController(client, f, scales, sdk.NewEventRecorder(ctx, client, component), clock.RealClock{}, env.Logger)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		c.logger.Info("controller started", "workers", cfg.Workers)
		var wg sync.WaitGroup
		wg.Go(func() { sdk.RunWorkers(ctx, c.stale, 1, c.reconcileStalePod, c.logger) })
		sdk.RunWorkers(ctx, c.queue, cfg.Workers, c.reconcile, c.logger)
		wg.Wait()
		return nil
	}, nil
}

// newScaleReader builds the scale client upstream builds: kinds resolved
// through discovery (cached, refreshed when a kind is not found, so a CRD
// created later is found).
func newScaleReader(cfg *rest.Config) (*scaleReader, error) {
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building discovery client: %w", err)
	}
	cached := memory.NewMemCacheClient(disco)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	// NewForConfig changes the config it is given.
	client, err := scale.NewForConfig(rest.CopyConfig(cfg), mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(cached))
	if err != nil {
		return nil, fmt.Errorf("building scale client: %w", err)
	}
	return &scaleReader{mapper: mapper, scales: client, disco: disco}, nil
}

// newController registers the informers and event handlers on f.
func newController(client kubernetes.Interface, f informers.SharedInformerFactory, scales *scaleReader,
	events record.EventRecorder, clk clock.Clock, logger *slog.Logger) (*controller, error) {
	pdbInf := f.Policy().V1().PodDisruptionBudgets().Informer()
	podInf := f.Core().V1().Pods().Informer()
	ctlInfs := map[string]cache.SharedIndexInformer{
		"replicationcontrollers": f.Core().V1().ReplicationControllers().Informer(),
		"replicasets":            f.Apps().V1().ReplicaSets().Informer(),
		"deployments":            f.Apps().V1().Deployments().Informer(),
		"statefulsets":           f.Apps().V1().StatefulSets().Informer(),
	}
	c := &controller{
		client: client, pdbs: pdbInf.GetIndexer(), pods: podInf.GetIndexer(),
		rcs: ctlInfs["replicationcontrollers"].GetIndexer(), rss: ctlInfs["replicasets"].GetIndexer(),
		deps: ctlInfs["deployments"].GetIndexer(), sets: ctlInfs["statefulsets"].GetIndexer(),
		scales: scales, queue: sdk.NewQueue[string](Name), stale: sdk.NewQueue[string](Name + "-stale-pods"),
		events: events, clock: clk, logger: logger,
	}
	if _, err := pdbInf.AddEventHandler(sdk.EnqueueObjects(c.queue)); err != nil {
		return nil, fmt.Errorf("watching poddisruptionbudgets: %w", err)
	}
	if _, err := podInf.AddEventHandler(c.podEvents()); err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	for what, inf := range ctlInfs {
		if _, err := inf.AddEventHandler(c.controllerEvents()); err != nil {
			return nil, fmt.Errorf("watching %s: %w", what, err)
		}
	}
	return c, nil
}

// pdbKey is the queue key of a PodDisruptionBudget.
func pdbKey(pdb *policyv1.PodDisruptionBudget) string {
	return cache.MetaObjectToName(pdb).String()
}
