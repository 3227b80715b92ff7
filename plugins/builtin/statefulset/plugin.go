// Package statefulset is the built-in StatefulSet controller plugin: pods
// with stable names <set>-<ordinal> (from spec.ordinals.start), stable
// network identities (hostname and the governing service as subdomain) and
// one PersistentVolumeClaim per ordinal and volumeClaimTemplate; created
// and removed in order (OrderedReady) or all at once (Parallel); rolled to
// a new template from the highest ordinal down (RollingUpdate with
// partition and maxUnavailable) or when the user deletes a pod (OnDelete);
// claims kept or deleted per persistentVolumeClaimRetentionPolicy; the
// templates kept as ControllerRevisions for `kubectl rollout`. It follows
// kube-controller-manager's statefulset controller.
package statefulset

import (
	"context"
	"fmt"
	"log/slog"

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

// Name is the plugin's name (`keelson plugin statefulset`).
const Name = "statefulset"

const (
	version   = "0.1.0"
	component = "statefulset-controller"
	// byController indexes pods and revisions by "namespace/controllerUID",
	// orphans by "namespace".
	byController = ownedpods.ByController
)

var kind = appsv1.SchemeGroupVersion.WithKind("StatefulSet")

// Config is the plugin's configuration section.
type Config struct {
	// Workers is how many StatefulSets are reconciled at once (default 5,
	// as kube-controller-manager's --concurrent-statefulset-syncs).
	Workers int `json:"workers"`
}

// trigger is what the plugin's caches serve: without any
// StatefulSets it has nothing to do, so it keeps no cache (of every
// pod among others) until one is created.
var trigger = sdk.Trigger{Resource: appsv1.SchemeGroupVersion.WithResource("statefulsets"), What: "StatefulSets"}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.LazyInformerPlugin(Name, version, trigger, setup, informers.WithTransform(transform))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"statefulsets"}, Verbs: []string{"get", "list", "watch"}},
		// finalizers: blockOwnerDeletion on the pods' ownerReferences.
		{APIGroups: []string{"apps"}, Resources: []string{"statefulsets/status", "statefulsets/finalizers"}, Verbs: []string{"update"}},
		{APIGroups: []string{"apps"}, Resources: []string{"controllerrevisions"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
		sdk.EventRule,
	}
	return p
}

type controller struct {
	client kubernetes.Interface
	sets   cache.Indexer
	pods   cache.Indexer
	revs   cache.Indexer
	claims cache.Indexer
	queue  workqueue.TypedRateLimitingInterface[string]
	exp    *expectations.Store
	// owned maps owner, pod and revision events to owner keys.
	owned  *ownedpods.Handlers[*appsv1.StatefulSet]
	events record.EventRecorder
	clock  clock.Clock
	logger *slog.Logger
	// fresh holds a sync back until the caches have seen this controller's
	// own writes for the StatefulSet (upstream's
	// StaleControllerConsistencyStatefulSet, on since 1.36).
	fresh *freshness.Guard
}

// Names of the caches the freshness guard watches.
const (
	podsCache   = "pods"
	setsCache   = "statefulsets"
	claimsCache = "persistentvolumeclaims"
)

func setup(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := Config{Workers: 5}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if cfg.Workers < 1 || cfg.Workers > 64 {
		return nil, fmt.Errorf("plugin %s config: workers is %d: set it between 1 and 64", Name, cfg.Workers)
	}
	sets := f.Apps().V1().StatefulSets().Informer()
	podInf := f.Core().V1().Pods().Informer()
	revInf := f.Apps().V1().ControllerRevisions().Informer()
	claimInf := f.Core().V1().PersistentVolumeClaims().Informer()
	for what, inf := range map[string]cache.SharedIndexInformer{"pods": podInf, "controllerrevisions": revInf} {
		if err := inf.AddIndexers(cache.Indexers{byController: ownedpods.IndexByController}); err != nil {
			return nil, fmt.Errorf("indexing %s by controller: %w", what, err)
		}
	}
	clk := clock.RealClock{}
	c := &controller{
		client: client, sets: sets.GetIndexer(), pods: podInf.GetIndexer(), revs: revInf.GetIndexer(), claims: claimInf.GetIndexer(),
		queue: sdk.NewQueue[string](Name), exp: expectations.New(clk, expectations.DefaultTTL),
		clock: clk, logger: env.Logger,
		fresh: freshness.New(map[string]freshness.Cache{podsCache: podInf.GetStore(), setsCache: sets.GetStore(), claimsCache: claimInf.GetStore()}),
	}
	c.owned = &ownedpods.Handlers[*appsv1.StatefulSet]{Kind: kind.Kind, Owners: c.sets, Queue: c.queue, Exp: c.exp,
		Selector:        func(o *appsv1.StatefulSet) *metav1.LabelSelector { return o.Spec.Selector },
		MinReadySeconds: func(o *appsv1.StatefulSet) int32 { return o.Spec.MinReadySeconds }}

	handlers := []struct {
		what string
		inf  cache.SharedIndexInformer
		h    cache.ResourceEventHandler
	}{
		{"statefulsets", sets, c.owned.OwnerEvents()},
		{"pods", podInf, c.owned.PodEvents()},
		{"controllerrevisions", revInf, c.owned.OwnedEvents()},
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

// transform keeps of a pod only what the controller reads (its identity,
// owner, revision, node, phase and readiness); other objects lose their
// managedFields.
func transform(obj any) (any, error) {
	p, ok := obj.(*v1.Pod)
	if !ok {
		return sdk.StripManagedFields(obj)
	}
	s := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, OwnerReferences: p.OwnerReferences,
			CreationTimestamp: p.CreationTimestamp, DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec:   v1.PodSpec{NodeName: p.Spec.NodeName},
		Status: v1.PodStatus{Phase: p.Status.Phase},
	}
	if c := pods.ReadyCondition(p); c != nil {
		s.Status.Conditions = []v1.PodCondition{{Type: c.Type, Status: c.Status, LastTransitionTime: c.LastTransitionTime}}
	}
	return s, nil
}

// PodTransform is the transform the plugin's informers run, pods among
// them (BenchmarkPodCacheBytes in plugins/builtin measures it).
var PodTransform = transform
