package cronjob

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/builtin/internal/tombstone"
	"github.com/keelson/keelson/plugins/sdk"
)

var cronJobKind = batchv1.SchemeGroupVersion.WithKind("CronJob")

// byController indexes Jobs by the UID of their controlling CronJob.
const byController = "controllerUID"

// Controller reconciles CronJobs.
type Controller struct {
	cfg    Config
	client kubernetes.Interface
	logger *slog.Logger
	clock  clock.Clock

	cronJobs cache.SharedIndexInformer
	jobs     cache.SharedIndexInformer
	queue    workqueue.TypedRateLimitingInterface[string]
	events   record.EventRecorder
}

// New registers the CronJob and Job informers on factory (which must apply
// Transform) and returns the controller.
func New(cfg Config, client kubernetes.Interface, factory informers.SharedInformerFactory, logger *slog.Logger, clk clock.Clock) (*Controller, error) {
	c := &Controller{
		cfg: cfg, client: client, logger: logger, clock: clk,
		cronJobs: factory.Batch().V1().CronJobs().Informer(),
		jobs:     factory.Batch().V1().Jobs().Informer(),
		queue:    sdk.NewQueue[string]("cronjob"),
	}
	if err := c.jobs.AddIndexers(cache.Indexers{byController: indexByController}); err != nil {
		return nil, fmt.Errorf("indexing jobs by controller: %w", err)
	}
	if _, err := c.cronJobs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue, UpdateFunc: func(_, o any) { c.enqueue(o) }, DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("watching cronjobs: %w", err)
	}
	jobChanged := func(obj any) {
		j, ok := tombstone.Object[*batchv1.Job](obj)
		if !ok {
			return
		}
		if ref := metav1.GetControllerOfNoCopy(j); ref != nil && ref.Kind == cronJobKind.Kind {
			c.queue.Add(j.Namespace + "/" + ref.Name)
		}
	}
	if _, err := c.jobs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: jobChanged, UpdateFunc: func(_, o any) { jobChanged(o) }, DeleteFunc: jobChanged,
	}); err != nil {
		return nil, fmt.Errorf("watching jobs: %w", err)
	}
	return c, nil
}

func indexByController(obj any) ([]string, error) {
	j, ok := obj.(*batchv1.Job)
	if !ok {
		return nil, nil
	}
	if ref := metav1.GetControllerOfNoCopy(j); ref != nil && ref.Kind == cronJobKind.Kind {
		return []string{string(ref.UID)}, nil
	}
	return nil, nil
}

// Run reconciles until ctx is cancelled.
func (c *Controller) Run(ctx context.Context) error {
	c.events = sdk.NewEventRecorder(ctx, c.client, "cronjob-controller")
	c.logger.Info("controller started", "workers", c.cfg.Workers)
	sdk.RunWorkers(ctx, c.queue, c.cfg.Workers, c.sync, c.logger)
	c.logger.Info("controller stopped")
	return nil
}

func (c *Controller) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

// sync reconciles the CronJob key and asks to be woken at its next
// schedule time.
func (c *Controller) sync(ctx context.Context, key string) (sdk.Result, error) {
	obj, exists, err := c.cronJobs.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return sdk.Result{}, err
	}
	cj := obj.(*batchv1.CronJob).DeepCopy()
	objs, err := c.jobs.GetIndexer().ByIndex(byController, string(cj.UID))
	if err != nil {
		return sdk.Result{}, err
	}
	jobs := make([]*batchv1.Job, 0, len(objs))
	for _, o := range objs {
		jobs = append(jobs, o.(*batchv1.Job))
	}
	requeue, changed, syncErr := c.syncCronJob(ctx, cj, jobs)
	if changed {
		if _, err := c.client.BatchV1().CronJobs(cj.Namespace).UpdateStatus(ctx, cj, metav1.UpdateOptions{}); err != nil {
			return sdk.Result{}, fmt.Errorf("updating the status of cronjob %s: %w", key, err)
		}
	}
	if syncErr != nil {
		return sdk.Result{}, syncErr
	}
	if err := c.cleanupFinished(ctx, cj, jobs); err != nil {
		return sdk.Result{}, err
	}
	return sdk.Result{RequeueAfter: requeue}, nil
}

// recordTime is the clock reading a sync works with.
func (c *Controller) now() time.Time { return c.clock.Now() }
