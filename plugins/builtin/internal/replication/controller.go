package replication

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/builtin/internal/expectations"
	"github.com/keelson/keelson/plugins/builtin/internal/freshness"
	"github.com/keelson/keelson/plugins/builtin/internal/pods"
	"github.com/keelson/keelson/plugins/builtin/internal/recorder"
	"github.com/keelson/keelson/plugins/builtin/internal/tombstone"
	"github.com/keelson/keelson/plugins/sdk"
)

// Names of the caches the freshness guard watches.
const (
	podsCache   = "pods"
	ownersCache = "owners"
)

// Controller reconciles the owners of one Kind.
type Controller struct {
	kind   Kind
	cfg    Config
	client kubernetes.Interface
	logger *slog.Logger
	clock  clock.Clock

	owners cache.SharedIndexInformer
	pods   cache.SharedIndexInformer

	exp    *expectations.Store
	fresh  *freshness.Guard
	loop   workqueue.TypedRateLimitingInterface[string]
	events record.EventRecorder
}

// New registers the owner and pod informers on factory (which must apply
// Transform) and returns the controller; Run starts its workers once the
// caches have synced.
func New(kind Kind, cfg Config, client kubernetes.Interface, factory informers.SharedInformerFactory, logger *slog.Logger, clk clock.Clock) (*Controller, error) {
	c := &Controller{
		kind:   kind,
		cfg:    cfg,
		client: client,
		logger: logger.With("kind", kind.GVK.Kind),
		clock:  clk,
		owners: kind.Informer(factory),
		pods:   factory.Core().V1().Pods().Informer(),
		exp:    expectations.New(clk, expectations.DefaultTTL),
	}
	c.loop = sdk.NewQueue[string](kind.Resource.Resource)
	c.fresh = freshness.New(map[string]freshness.Cache{podsCache: c.pods.GetStore(), ownersCache: c.owners.GetStore()})
	if err := c.owners.AddIndexers(cache.Indexers{byOwnerController: indexByOwnerController}); err != nil {
		return nil, fmt.Errorf("indexing %s by controller: %w", kind.Resource, err)
	}
	if err := c.pods.AddIndexers(cache.Indexers{byController: indexPodByController}); err != nil {
		return nil, fmt.Errorf("indexing pods by controller: %w", err)
	}
	if _, err := c.owners.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue, UpdateFunc: c.updateOwner, DeleteFunc: c.deleteOwner,
	}); err != nil {
		return nil, fmt.Errorf("watching %s: %w", kind.Resource, err)
	}
	if _, err := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.addPod, UpdateFunc: c.updatePod, DeleteFunc: c.deletePod,
	}); err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	return c, nil
}

// Run reconciles until ctx is cancelled.
func (c *Controller) Run(ctx context.Context) error {
	events, stop := recorder.Start(ctx, c.client, c.kind.Component)
	defer stop()
	c.events = events
	c.logger.Info("controller started", "workers", c.cfg.Workers, "burstReplicas", c.cfg.BurstReplicas)
	sdk.RunWorkers(ctx, c.loop, c.cfg.Workers, func(ctx context.Context, key string) (sdk.Result, error) {
		return sdk.Result{}, c.sync(ctx, key)
	}, c.logger, sdk.WithExpectedErrors(routine))
	c.logger.Info("controller stopped")
	return nil
}

// routine reports errors that are part of normal operation: the freshness
// guard holding a sync back while the controller writes faster than its
// watch delivers. (A write that lost a race with another writer, a
// conflict, is one for every SDK loop: the retry reads the newer object.)
func routine(err error) bool { return freshness.IsStale(err) }

func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		c.logger.Error("cannot key object", "error", err)
		return
	}
	c.loop.Add(key)
}

func (c *Controller) updateOwner(oldObj, newObj any) {
	oldM, err1 := metaOf(oldObj)
	newM, err2 := metaOf(newObj)
	if err1 == nil && err2 == nil && oldM.GetUID() != newM.GetUID() {
		// Deleted and re-created under the same name between two events.
		c.deleteOwner(cache.DeletedFinalStateUnknown{Key: cache.NewObjectName(oldM.GetNamespace(), oldM.GetName()).String(), Obj: oldObj})
	}
	c.enqueue(newObj)
}

func (c *Controller) deleteOwner(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		c.logger.Error("cannot key deleted object", "error", err)
		return
	}
	// A new owner of the same name must start without the old one's
	// expectations or recorded writes.
	c.exp.Delete(key)
	c.fresh.Forget(key)
	c.loop.Add(key)
}

// ownerOf returns the cached owner that ref points to, if it is of this
// controller's kind and still the same object (UID).
func (c *Controller) ownerOf(namespace string, ref *metav1.OwnerReference) *appsv1.ReplicaSet {
	if ref == nil || ref.Kind != c.kind.GVK.Kind {
		return nil
	}
	obj, ok, err := c.owners.GetIndexer().GetByKey(cache.NewObjectName(namespace, ref.Name).String())
	if err != nil || !ok {
		return nil
	}
	rs, ok := c.kind.View(obj)
	if !ok || rs.UID != ref.UID {
		return nil
	}
	return rs
}

// ownersSelecting returns the owners in pod's namespace whose selector
// matches its labels: candidates to adopt an orphan. An empty selector
// matches nothing here.
func (c *Controller) ownersSelecting(pod *v1.Pod) []*appsv1.ReplicaSet {
	objs, err := c.owners.GetIndexer().ByIndex(cache.NamespaceIndex, pod.Namespace)
	if err != nil {
		return nil
	}
	var out []*appsv1.ReplicaSet
	for _, obj := range objs {
		rs, ok := c.kind.View(obj)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		out = append(out, rs)
	}
	if len(out) > 1 {
		c.logger.Warn("more than one owner selects a pod; only one can control it", "pod", pod.Namespace+"/"+pod.Name, "labels", pod.Labels)
	}
	return out
}

func (c *Controller) enqueueOwner(rs *appsv1.ReplicaSet) {
	c.loop.Add(cache.NewObjectName(rs.Namespace, rs.Name).String())
}

func podKey(p *v1.Pod) string { return p.Namespace + "/" + p.Name }

func (c *Controller) addPod(obj any) {
	pod := obj.(*v1.Pod)
	if pod.DeletionTimestamp != nil {
		// Seen for the first time already terminating (e.g. after a
		// restart): that is a deletion, not a creation.
		c.deletePod(pod)
		return
	}
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		if rs := c.ownerOf(pod.Namespace, ref); rs != nil {
			key := cache.NewObjectName(rs.Namespace, rs.Name).String()
			c.exp.CreationObserved(key)
			c.loop.Add(key)
		}
		return
	}
	for _, rs := range c.ownersSelecting(pod) {
		c.enqueueOwner(rs)
	}
}

func (c *Controller) updatePod(oldObj, newObj any) {
	oldPod, cur := oldObj.(*v1.Pod), newObj.(*v1.Pod)
	if cur.ResourceVersion == oldPod.ResourceVersion {
		return // a resync, nothing changed
	}
	labelsChanged := !reflect.DeepEqual(cur.Labels, oldPod.Labels)
	if cur.DeletionTimestamp != nil {
		// Graceful deletion started: replace the pod now rather than when
		// it is finally gone.
		c.deletePod(cur)
		if labelsChanged {
			c.deletePod(oldPod)
		}
		return
	}
	curRef, oldRef := metav1.GetControllerOfNoCopy(cur), metav1.GetControllerOfNoCopy(oldPod)
	refChanged := !reflect.DeepEqual(curRef, oldRef)
	if refChanged && oldRef != nil {
		if rs := c.ownerOf(oldPod.Namespace, oldRef); rs != nil {
			c.enqueueOwner(rs)
		}
	}
	if curRef != nil {
		rs := c.ownerOf(cur.Namespace, curRef)
		if rs == nil {
			return
		}
		c.enqueueOwner(rs)
		// Availability needs minReadySeconds of readiness and no event marks
		// that moment: look again once it has passed.
		if !pods.IsReady(oldPod) && pods.IsReady(cur) && rs.Spec.MinReadySeconds > 0 {
			c.loop.AddAfter(cache.NewObjectName(rs.Namespace, rs.Name).String(), time.Duration(rs.Spec.MinReadySeconds)*time.Second)
		}
		return
	}
	if labelsChanged || refChanged {
		for _, rs := range c.ownersSelecting(cur) {
			c.enqueueOwner(rs)
		}
	}
}

func (c *Controller) deletePod(obj any) {
	pod, ok := tombstone.Object[*v1.Pod](obj)
	if !ok {
		return
	}
	rs := c.ownerOf(pod.Namespace, metav1.GetControllerOfNoCopy(pod))
	if rs == nil {
		return // orphans leaving concern nobody
	}
	key := cache.NewObjectName(rs.Namespace, rs.Name).String()
	c.exp.DeletionObserved(key, podKey(pod))
	c.loop.Add(key)
}
