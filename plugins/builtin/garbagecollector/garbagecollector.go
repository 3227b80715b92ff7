// Package garbagecollector is the garbage collector as a built-in plugin:
// it deletes objects whose owners (metadata.ownerReferences) are all gone,
// for every kind the API serves, custom resources included, and carries
// out the three propagation policies of a delete: background (dependents
// go after their owner), foreground (the owner, held by the
// foregroundDeletion finalizer, goes after its dependents that block
// owner deletion) and orphan (dependents lose the owner reference and
// stay). It behaves like kube-controller-manager's garbage collector.
//
// It watches the metadata (not the content) of every resource that can be
// listed, watched and deleted, rediscovering them every 30 seconds and
// soon after a CustomResourceDefinition changes, and indexes the caches by
// owner; decisions to delete are confirmed against the API server first.
package garbagecollector

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/lru"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "garbagecollector"

// eventSource is upstream's event source for the collector.
const eventSource = "garbage-collector-controller"

const (
	// resyncPeriod is how often served resources are rediscovered.
	resyncPeriod = 30 * time.Second
	// syncPatience is how long a new monitor may take to fill its cache
	// before it stops holding up orphaning and foreground deletion.
	syncPatience = time.Minute
	// absentCacheSize bounds the memory of owners known to be gone.
	absentCacheSize = 500
)

var crdResource = schema.GroupResource{Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions"}

// Config is the plugin's config section.
type Config struct {
	// Workers is how many objects are processed at once (default 20, like
	// kube-controller-manager's --concurrent-gc-syncs).
	Workers int `json:"workers"`
}

// Plugin returns the garbage collector plugin.
func Plugin() sdk.Plugin {
	return sdk.IgnoreAPIWarnings(sdk.Plugin{
		Name:        Name,
		Kind:        sdk.KindController,
		Version:     "0.1.0",
		ManualReady: true,
		Run:         run,
		// Like upstream's generic-garbage-collector role: any resource.
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch", "patch", "update", "delete"}},
			sdk.EventRule,
		},
	})
}

// objectKey identifies an object across renames and recreations.
type objectKey struct {
	resource  schema.GroupResource
	namespace string
	name      string
	uid       types.UID
}

func (k objectKey) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", k.resource, k.namespace, k.name, k.uid)
}

type collector struct {
	client   metadata.Interface
	monitors *monitors
	queue    workqueue.TypedRateLimitingInterface[objectKey]
	recorder record.EventRecorder
	// absent remembers owners verified gone, keyed by ownerIdentity.
	absent *lru.Cache
	// crdChanged is signalled when a CustomResourceDefinition changes.
	crdChanged chan struct{}
	logger     *slog.Logger
}

func run(ctx context.Context, env sdk.Env) error {
	cfg := Config{Workers: 20}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return err
	}
	if cfg.Workers < 1 {
		return sdk.ConfigErrorf("workers", "workers must be at least 1, got %d", cfg.Workers)
	}
	md, err := metadata.NewForConfig(env.RESTConfig)
	if err != nil {
		return fmt.Errorf("building metadata client: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(env.RESTConfig)
	if err != nil {
		return fmt.Errorf("building discovery client: %w", err)
	}
	kube, err := kubernetes.NewForConfig(env.RESTConfig)
	if err != nil {
		return fmt.Errorf("building API client: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gc := &collector{
		client:     md,
		queue:      sdk.NewQueue[objectKey](Name),
		recorder:   sdk.NewEventRecorder(ctx, kube, eventSource),
		absent:     lru.New(absentCacheSize),
		crdChanged: make(chan struct{}, 1),
		logger:     env.Logger,
	}
	gc.monitors = &monitors{client: md, handler: gc.handler, logger: env.Logger,
		byGR: map[schema.GroupResource]*monitor{}}
	defer gc.monitors.stopAll()

	env.NotReady("discovering resources", nil)
	if err := gc.resync(ctx, disco); err != nil {
		return fmt.Errorf("discovering resources: %w", err)
	}
	// Like upstream, start collecting after the caches synced or a while
	// has passed: decisions to delete are checked live anyway, and the
	// steps that rely on complete caches wait for them.
	waitCtx, waitCancel := context.WithTimeout(ctx, syncPatience/2)
	cache.WaitForCacheSync(waitCtx.Done(), func() bool { return gc.monitors.synced(syncPatience) })
	waitCancel()
	if ctx.Err() != nil {
		return nil
	}
	env.Ready("monitoring resources")
	go gc.rediscover(ctx, disco)
	sdk.RunWorkers(ctx, gc.queue, cfg.Workers, gc.reconcile, gc.logger)
	return nil
}

// resync brings the monitors in line with what the API serves.
func (gc *collector) resync(ctx context.Context, d discovery.ServerResourcesInterface) error {
	served, err := discover(d)
	if served == nil {
		return err
	}
	if err != nil {
		gc.logger.Warn("discovery failed for some API groups; keeping their monitors", "error", err)
	}
	gc.monitors.sync(ctx, served, err != nil)
	return nil
}

// rediscover resyncs every resyncPeriod, and one and five seconds after a
// CustomResourceDefinition changes (its resource is served only once it is
// established).
func (gc *collector) rediscover(ctx context.Context, d discovery.ServerResourcesInterface) {
	t := time.NewTimer(resyncPeriod)
	defer t.Stop()
	var soon []time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-gc.crdChanged:
			soon = []time.Duration{time.Second, 4 * time.Second}
		case <-t.C:
			if err := gc.resync(ctx, d); err != nil {
				gc.logger.Warn("rediscovering resources", "error", err)
			}
			if len(soon) > 0 {
				soon = soon[1:]
			}
		}
		next := resyncPeriod
		if len(soon) > 0 {
			next = soon[0]
		}
		t.Reset(next)
	}
}

func (gc *collector) enqueue(r *resource, m *metav1.PartialObjectMetadata) {
	gc.queue.Add(objectKey{resource: r.gvr.GroupResource(), namespace: m.Namespace, name: m.Name, uid: m.UID})
}

func asMeta(obj any) *metav1.PartialObjectMetadata {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, _ := obj.(*metav1.PartialObjectMetadata)
	return m
}

// handler turns one monitor's events into work: the object itself when it
// has owners or is being deleted in a way the collector finishes, its
// dependents when it goes or starts waiting for them, and its owners when
// they wait for their dependents.
func (gc *collector) handler(m *monitor) cache.ResourceEventHandler {
	isCRD := m.gvr.GroupResource() == crdResource
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if isCRD {
				gc.signalCRD()
			}
			gc.observe(m, nil, asMeta(obj))
		},
		UpdateFunc: func(oldObj, newObj any) {
			if isCRD {
				gc.signalCRD()
			}
			gc.observe(m, asMeta(oldObj), asMeta(newObj))
		},
		DeleteFunc: func(obj any) {
			if isCRD {
				gc.signalCRD()
			}
			gc.observeDeletion(m, asMeta(obj))
		},
	}
}

func (gc *collector) signalCRD() {
	select {
	case gc.crdChanged <- struct{}{}:
	default:
	}
}

func (gc *collector) observe(m *monitor, old, cur *metav1.PartialObjectMetadata) {
	if cur == nil {
		return
	}
	if old != nil {
		o, c := old.ObjectMeta, cur.ObjectMeta
		o.ResourceVersion, c.ResourceVersion = "", ""
		if equality.Semantic.DeepEqual(o, c) {
			return // nothing the collector reads changed
		}
	}
	if len(cur.OwnerReferences) > 0 || (cur.DeletionTimestamp != nil && (hasFinalizer(cur, metav1.FinalizerOrphanDependents) || hasFinalizer(cur, metav1.FinalizerDeleteDependents))) {
		gc.enqueue(&m.resource, cur)
	}
	if deletingDependents(cur) {
		for _, d := range gc.monitors.dependents(cur.UID) {
			gc.enqueue(d.res, d.obj)
		}
	}
	var oldRefs []metav1.OwnerReference
	if old != nil {
		oldRefs = old.OwnerReferences
	}
	gc.enqueueWaitingOwners(cur, slices.Concat(oldRefs, cur.OwnerReferences))
}

func (gc *collector) observeDeletion(m *monitor, obj *metav1.PartialObjectMetadata) {
	if obj == nil {
		return
	}
	gc.absent.Add(ownerIdentity{resource: m.gvr.GroupResource(), namespace: obj.Namespace, name: obj.Name, uid: obj.UID}, struct{}{})
	for _, d := range gc.monitors.dependents(obj.UID) {
		gc.enqueue(d.res, d.obj)
	}
	gc.enqueueWaitingOwners(obj, obj.OwnerReferences)
}

// enqueueWaitingOwners queues the owners among refs that are waiting for
// their dependents: dep's change may be what they wait for.
func (gc *collector) enqueueWaitingOwners(dep *metav1.PartialObjectMetadata, refs []metav1.OwnerReference) {
	for _, ref := range refs {
		r, ok := gc.monitors.kindOf(ref.APIVersion, ref.Kind)
		if !ok {
			continue
		}
		ns := ""
		if r.namespaced {
			ns = dep.Namespace
		}
		if owner, _ := gc.monitors.get(r.gvr.GroupResource(), ns, ref.Name); owner != nil && owner.UID == ref.UID && deletingDependents(owner) {
			gc.enqueue(r, owner)
		}
	}
}
