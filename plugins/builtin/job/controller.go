package job

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/builtin/internal/expectations"
	"github.com/keelson/keelson/plugins/builtin/internal/freshness"
	"github.com/keelson/keelson/plugins/builtin/internal/tombstone"
	"github.com/keelson/keelson/plugins/sdk"
)

var jobKind = batchv1.SchemeGroupVersion.WithKind("Job")

// Names of the caches the freshness guard watches.
const (
	podsCache = "pods"
	jobsCache = "jobs"
)

// wrotePod records a write to pod (its created or patched version) for
// the Job that controls it. A pod without the job-name label is outside
// the pod cache's selection: the cache would never show the write, and the
// Job's syncs would wait for it for good.
func (c *Controller) wrotePod(p *v1.Pod) {
	if _, seen := p.Labels[batchv1.JobNameLabel]; !seen {
		return
	}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil && ref.Kind == jobKind.Kind {
		c.fresh.Wrote(p.Namespace+"/"+ref.Name, ref.UID, podsCache, p.ResourceVersion)
	}
}

// Controller reconciles Jobs.
type Controller struct {
	cfg    Config
	client kubernetes.Interface
	logger *slog.Logger
	clock  clock.Clock

	jobs       cache.SharedIndexInformer
	pods       cache.SharedIndexInformer
	podFactory informers.SharedInformerFactory

	queue   workqueue.TypedRateLimitingInterface[string]
	orphans workqueue.TypedRateLimitingInterface[string]
	// leavers are pods that left the pod cache's label selection but
	// still exist (leavers.go).
	leavers workqueue.TypedRateLimitingInterface[string]
	exp     *expectations.Store
	backoff *backoffStore
	events  record.EventRecorder
	// fresh holds a Job's sync back until the caches have seen this
	// controller's own writes for it (upstream's stale-controller
	// consistency guard, StaleControllerConsistencyJob, on since 1.36).
	fresh *freshness.Guard
}

// New registers the Job informer on factory and a pod informer of its own
// that lists only pods carrying the batch.kubernetes.io/job-name label
// (every pod this controller creates has it), slimmed to what the
// reconciler reads. Run starts the workers once the caches have synced.
func New(cfg Config, client kubernetes.Interface, factory informers.SharedInformerFactory, logger *slog.Logger, clk clock.Clock) (*Controller, error) {
	req, err := labels.NewRequirement(batchv1.JobNameLabel, selection.Exists, nil)
	if err != nil {
		return nil, fmt.Errorf("building the pod selector: %w", err)
	}
	podFactory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = req.String() }),
		informers.WithTransform(slimPod))
	c := &Controller{
		cfg:        cfg,
		client:     client,
		logger:     logger,
		clock:      clk,
		jobs:       factory.Batch().V1().Jobs().Informer(),
		pods:       podFactory.Core().V1().Pods().Informer(),
		podFactory: podFactory,
		queue:      sdk.NewQueue[string]("job"),
		orphans:    sdk.NewQueue[string]("job-orphan-pods"),
		leavers:    sdk.NewQueue[string]("job-unlabelled-pods"),
		exp:        expectations.New(clk, expectations.DefaultTTL),
		backoff:    newBackoffStore(),
	}
	c.fresh = freshness.New(map[string]freshness.Cache{podsCache: c.pods.GetStore(), jobsCache: c.jobs.GetStore()})
	if _, err := c.jobs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueJob, UpdateFunc: c.updateJob, DeleteFunc: c.deleteJob,
	}); err != nil {
		return nil, fmt.Errorf("watching jobs: %w", err)
	}
	if _, err := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.addPod, UpdateFunc: c.updatePod, DeleteFunc: c.deletePod,
	}); err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	return c, nil
}

// Run starts the pod informer, waits for it, and reconciles until ctx is
// cancelled.
func (c *Controller) Run(ctx context.Context) error {
	c.podFactory.Start(ctx.Done())
	defer c.podFactory.Shutdown()
	for typ, ok := range c.podFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("informer cache for %v did not sync", typ)
		}
	}
	c.events = sdk.NewEventRecorder(ctx, c.client, "job-controller")
	c.logger.Info("controller started", "workers", c.cfg.Workers)
	var wg sync.WaitGroup
	wg.Go(func() { sdk.RunWorkers(ctx, c.orphans, 1, c.syncOrphanPod, c.logger) })
	wg.Go(func() { sdk.RunWorkers(ctx, c.leavers, 1, c.syncLeaver, c.logger) })
	sdk.RunWorkers(ctx, c.queue, c.cfg.Workers, c.sync, c.logger, sdk.WithExpectedErrors(freshness.IsStale))
	wg.Wait()
	c.logger.Info("controller stopped")
	return nil
}

func (c *Controller) enqueueJob(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) updateJob(oldObj, newObj any) {
	oldJob, cur := oldObj.(*batchv1.Job), newObj.(*batchv1.Job)
	if oldJob.UID != cur.UID {
		c.deleteJob(oldJob)
	}
	c.enqueueJob(cur)
}

func (c *Controller) deleteJob(obj any) {
	job, ok := tombstone.Object[*batchv1.Job](obj)
	if !ok {
		return
	}
	key := cache.MetaObjectToName(job).String()
	c.exp.Delete(key)
	c.backoff.forget(key)
	c.fresh.Forget(key)
	c.queue.Add(key)
	// Its pods keep their tracking finalizer until someone removes it.
	pods, _ := c.pods.GetIndexer().ByIndex(cache.NamespaceIndex, job.Namespace)
	for _, obj := range pods {
		p := obj.(*v1.Pod)
		if ref := metav1.GetControllerOfNoCopy(p); ref != nil && ref.UID == job.UID && hasFinalizer(p) {
			c.orphans.Add(cache.MetaObjectToName(p).String())
		}
	}
}

// jobOf returns the cached Job that ref points to, if it still is that
// object.
func (c *Controller) jobOf(namespace string, ref *metav1.OwnerReference) *batchv1.Job {
	if ref == nil || ref.Kind != jobKind.Kind || ref.APIVersion != jobKind.GroupVersion().String() {
		return nil
	}
	obj, ok, err := c.jobs.GetIndexer().GetByKey(namespace + "/" + ref.Name)
	if err != nil || !ok {
		return nil
	}
	if j := obj.(*batchv1.Job); j.UID == ref.UID {
		return j
	}
	return nil
}

// jobsSelecting returns the Jobs in pod's namespace whose selector matches
// it: candidates to adopt an orphan.
func (c *Controller) jobsSelecting(pod *v1.Pod) []*batchv1.Job {
	objs, _ := c.jobs.GetIndexer().ByIndex(cache.NamespaceIndex, pod.Namespace)
	var out []*batchv1.Job
	for _, obj := range objs {
		j := obj.(*batchv1.Job)
		sel, err := metav1.LabelSelectorAsSelector(j.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		out = append(out, j)
	}
	return out
}

func (c *Controller) addPod(obj any) {
	pod := obj.(*v1.Pod)
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		for _, j := range c.jobsSelecting(pod) {
			c.enqueueJob(j)
		}
		c.checkOrphan(pod, nil)
		return
	}
	j := c.jobOf(pod.Namespace, ref)
	if j != nil {
		key := cache.MetaObjectToName(j).String()
		if pod.DeletionTimestamp == nil {
			c.exp.CreationObserved(key)
		}
		c.queue.Add(key)
	}
	c.checkOrphan(pod, j)
}

func (c *Controller) updatePod(oldObj, newObj any) {
	oldPod, cur := oldObj.(*v1.Pod), newObj.(*v1.Pod)
	if oldPod.ResourceVersion == cur.ResourceVersion {
		return
	}
	if cur.DeletionTimestamp != nil && oldPod.DeletionTimestamp == nil {
		if j := c.jobOf(cur.Namespace, metav1.GetControllerOfNoCopy(cur)); j != nil {
			c.exp.DeletionObserved(cache.MetaObjectToName(j).String(), cache.MetaObjectToName(cur).String())
		}
	}
	oldRef, curRef := metav1.GetControllerOfNoCopy(oldPod), metav1.GetControllerOfNoCopy(cur)
	if oldRef != nil && (curRef == nil || oldRef.UID != curRef.UID) {
		if j := c.jobOf(oldPod.Namespace, oldRef); j != nil {
			c.enqueueJob(j)
		}
	}
	if curRef == nil {
		for _, j := range c.jobsSelecting(cur) {
			c.enqueueJob(j)
		}
		c.checkOrphan(cur, nil)
		return
	}
	j := c.jobOf(cur.Namespace, curRef)
	if j != nil {
		c.enqueueJob(j)
	}
	c.checkOrphan(cur, j)
}

func (c *Controller) deletePod(obj any) {
	if p, maybe := mayStillExist(obj); maybe {
		c.leavers.Add(cache.MetaObjectToName(p).String())
	}
	pod, ok := tombstone.Object[*v1.Pod](obj)
	if !ok {
		return
	}
	if j := c.jobOf(pod.Namespace, metav1.GetControllerOfNoCopy(pod)); j != nil {
		key := cache.MetaObjectToName(j).String()
		c.exp.DeletionObserved(key, cache.MetaObjectToName(pod).String())
		c.queue.Add(key)
	}
}

// checkOrphan queues pod for finalizer removal if it holds the tracking
// finalizer but no live, unfinished Job will ever count it.
func (c *Controller) checkOrphan(pod *v1.Pod, j *batchv1.Job) {
	if !hasFinalizer(pod) {
		return
	}
	if j == nil || isFinished(j) {
		c.orphans.Add(cache.MetaObjectToName(pod).String())
	}
}

func hasFinalizer(p *v1.Pod) bool { return slices.Contains(p.Finalizers, batchv1.JobTrackingFinalizer) }
