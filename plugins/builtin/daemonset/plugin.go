// Package daemonset is the built-in DaemonSet controller plugin: one pod
// per eligible node (nodeSelector, required node affinity, taints against
// the template's tolerations plus those upstream adds to every daemon
// pod), bound through the scheduler by a required node affinity on the
// node's metadata.name; pods follow nodes joining, leaving and changing;
// a new template rolls out with RollingUpdate (maxUnavailable, maxSurge)
// or when the user deletes pods (OnDelete), its revisions kept as
// ControllerRevisions for `kubectl rollout`. It follows
// kube-controller-manager's daemonset controller.
package daemonset

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/builtin/internal/expectations"
	"github.com/keelson/keelson/plugins/builtin/internal/freshness"
	"github.com/keelson/keelson/plugins/builtin/internal/ownedpods"
	"github.com/keelson/keelson/plugins/builtin/internal/pods"
	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin daemonset`).
const Name = "daemonset"

const (
	version      = "0.1.0"
	component    = "daemonset-controller"
	byController = ownedpods.ByController
)

var kind = appsv1.SchemeGroupVersion.WithKind("DaemonSet")

// Config is the plugin's configuration section.
type Config struct {
	// Workers is how many DaemonSets are reconciled at once (default 2,
	// as kube-controller-manager's --concurrent-daemonset-syncs).
	Workers int `json:"workers"`
	// BurstReplicas caps the pods created or deleted for one DaemonSet in
	// one sync (default 250, as upstream).
	BurstReplicas int `json:"burstReplicas"`
	sdk.ClientLimits
}

// parseConfig reads raw (may be empty) over the defaults and validates it.
func parseConfig(raw []byte) (Config, error) {
	cfg := Config{Workers: 2, BurstReplicas: 250}
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return cfg, err
	}
	if cfg.Workers < 1 || cfg.Workers > 64 {
		return cfg, fmt.Errorf("plugin %s config: %w", Name, sdk.ConfigErrorf("workers", "workers is %d: set it between 1 and 64", cfg.Workers))
	}
	if cfg.BurstReplicas < 1 {
		return cfg, fmt.Errorf("plugin %s config: %w", Name, sdk.ConfigErrorf("burstReplicas", "burstReplicas is %d: set it to at least 1", cfg.BurstReplicas))
	}
	if err := cfg.ClientLimits.Validate(); err != nil {
		return cfg, fmt.Errorf("plugin %s config: %w", Name, err)
	}
	return cfg, nil
}

// trigger is what the plugin's caches serve: without any
// DaemonSets it has nothing to do, so it keeps no cache (of every
// pod among others) until one is created.
var trigger = sdk.Trigger{Resource: appsv1.SchemeGroupVersion.WithResource("daemonsets"), What: "DaemonSets"}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.LazyInformerPlugin(Name, version, trigger, setup, informers.WithTransform(transform))
	run := p.Run
	p.Run = func(ctx context.Context, env sdk.Env) error {
		// The client limits apply to the client the SDK makes for setup.
		cfg, err := parseConfig(env.Config)
		if err != nil {
			return err
		}
		env.RESTConfig = cfg.ClientLimits.Apply(env.RESTConfig)
		return run(ctx, env)
	}
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"daemonsets/status", "daemonsets/finalizers"}, Verbs: []string{"update"}},
		{APIGroups: []string{"apps"}, Resources: []string{"controllerrevisions"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch", "create", "delete", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list", "watch"}},
		sdk.EventRule,
	}
	return p
}

type controller struct {
	client kubernetes.Interface
	sets   cache.Indexer
	pods   cache.Indexer
	revs   cache.Indexer
	nodes  cache.Indexer
	queue  workqueue.TypedRateLimitingInterface[string]
	exp    *expectations.Store
	// owned maps owner, pod and revision events to owner keys.
	owned  *ownedpods.Handlers[*appsv1.DaemonSet]
	events record.EventRecorder
	clock  clock.Clock
	logger *slog.Logger
	burst  int
	// fresh holds a sync back until the caches have seen this controller's
	// own writes for the DaemonSet (upstream's
	// StaleControllerConsistencyDaemonSet, on since 1.36).
	fresh *freshness.Guard
}

// Names of the caches the freshness guard watches.
const (
	podsCache = "pods"
	setsCache = "daemonsets"
)

func setup(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg, err := parseConfig(env.Config)
	if err != nil {
		return nil, err
	}
	sets := f.Apps().V1().DaemonSets().Informer()
	podInf := f.Core().V1().Pods().Informer()
	revInf := f.Apps().V1().ControllerRevisions().Informer()
	nodeInf := f.Core().V1().Nodes().Informer()
	for what, inf := range map[string]cache.SharedIndexInformer{"pods": podInf, "controllerrevisions": revInf} {
		if err := inf.AddIndexers(cache.Indexers{byController: ownedpods.IndexByController}); err != nil {
			return nil, fmt.Errorf("indexing %s by controller: %w", what, err)
		}
	}
	clk := clock.RealClock{}
	c := &controller{
		client: client, sets: sets.GetIndexer(), pods: podInf.GetIndexer(), revs: revInf.GetIndexer(), nodes: nodeInf.GetIndexer(),
		queue: sdk.NewQueue[string](Name), exp: expectations.New(clk, expectations.DefaultTTL),
		clock: clk, logger: env.Logger, burst: cfg.BurstReplicas,
		fresh: freshness.New(map[string]freshness.Cache{podsCache: podInf.GetStore(), setsCache: sets.GetStore()}),
	}
	c.owned = &ownedpods.Handlers[*appsv1.DaemonSet]{Kind: kind.Kind, Owners: c.sets, Queue: c.queue, Exp: c.exp,
		Selector:        func(o *appsv1.DaemonSet) *metav1.LabelSelector { return o.Spec.Selector },
		MinReadySeconds: func(o *appsv1.DaemonSet) int32 { return o.Spec.MinReadySeconds }}

	handlers := []struct {
		what string
		inf  cache.SharedIndexInformer
		h    cache.ResourceEventHandler
	}{
		{"daemonsets", sets, c.owned.OwnerEvents()},
		{"pods", podInf, c.owned.PodEvents()},
		{"controllerrevisions", revInf, c.owned.OwnedEvents()},
		{"nodes", nodeInf, cache.ResourceEventHandlerFuncs{AddFunc: c.enqueueAll, UpdateFunc: c.updateNode, DeleteFunc: c.enqueueAll}},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("watching %s: %w", h.what, err)
		}
	}
	return func(ctx context.Context) error {
		c.events = sdk.NewEventRecorder(ctx, client, component)
		c.logger.Info("controller started", "workers", cfg.Workers)
		sdk.RunWorkers(ctx, c.queue, cfg.Workers, c.reconcile, c.logger, sdk.WithExpectedErrors(freshness.IsStale))
		return nil
	}, nil
}

// transform keeps of a pod its identity, owner, revision labels, target
// node (nodeName or the affinity naming it), phase and readiness; of a node
// its name, labels, taints and unschedulable flag (its status, most of its
// size and most of its updates, is never read).
func transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *v1.Pod:
		s := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion,
				Labels: o.Labels, OwnerReferences: o.OwnerReferences,
				CreationTimestamp: o.CreationTimestamp, DeletionTimestamp: o.DeletionTimestamp,
			},
			Spec:   v1.PodSpec{NodeName: o.Spec.NodeName},
			Status: v1.PodStatus{Phase: o.Status.Phase},
		}
		if o.Spec.NodeName == "" {
			if n := targetNode(o); n != "" {
				s.Spec.Affinity = nodeAffinity(nil, n)
			}
		}
		if c := pods.ReadyCondition(o); c != nil {
			s.Status.Conditions = []v1.PodCondition{{Type: c.Type, Status: c.Status, LastTransitionTime: c.LastTransitionTime}}
		}
		return s, nil
	case *v1.Node:
		return &v1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, UID: o.UID, ResourceVersion: o.ResourceVersion, Labels: o.Labels},
			Spec:       v1.NodeSpec{Taints: o.Spec.Taints, Unschedulable: o.Spec.Unschedulable},
		}, nil
	}
	return sdk.StripManagedFields(obj)
}

func (c *controller) enqueueAll(any) {
	for _, k := range c.sets.ListKeys() {
		c.queue.Add(k)
	}
}

func (c *controller) updateNode(oldObj, newObj any) {
	old, cur := oldObj.(*v1.Node), newObj.(*v1.Node)
	if !reflect.DeepEqual(old.Labels, cur.Labels) || !reflect.DeepEqual(old.Spec, cur.Spec) {
		c.enqueueAll(cur)
	}
}

// PodTransform is the transform the plugin's informers run, pods among
// them (BenchmarkPodCacheBytes in plugins/builtin measures it).
var PodTransform = transform
