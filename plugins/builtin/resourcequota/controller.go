package resourcequota

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	quota "k8s.io/apiserver/pkg/quota/v1"
	"k8s.io/apiserver/pkg/quota/v1/generic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	quotainstall "k8s.io/kubernetes/pkg/quota/v1/install"

	"github.com/keelson/keelson/plugins/sdk"
)

type controller struct {
	cfg      Config
	client   kubernetes.Interface
	quotas   corelisters.ResourceQuotaLister
	registry quota.Registry
	monitors *monitors
	queue    workqueue.TypedRateLimitingInterface[string]
	logger   *slog.Logger
}

func newController(cfg Config, client kubernetes.Interface, f informers.SharedInformerFactory,
	meta metadata.Interface, logger *slog.Logger) (*controller, error) {
	c := &controller{cfg: cfg, client: client, queue: sdk.NewQueue[string](Name), logger: logger}
	c.monitors = newMonitors(f, meta, c.replenish, logger)
	conf, err := quotainstall.NewQuotaConfigurationForControllers(generic.ListerFuncForResourceFunc(c.monitors.informerFor), f)
	if err != nil {
		return nil, fmt.Errorf("building the quota evaluators: %w", err)
	}
	c.registry = generic.NewRegistry(conf.Evaluators())
	c.monitors.ignored = conf.IgnoredResources()
	qi := f.Core().V1().ResourceQuotas()
	c.quotas = qi.Lister()
	if _, err := qi.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue,
		UpdateFunc: func(old, cur any) {
			o, n := old.(*corev1.ResourceQuota), cur.(*corev1.ResourceQuota)
			// Our own status writes come back as updates: only a new spec,
			// or a status someone else changed, needs a sync.
			if !quota.Equals(o.Spec.Hard, n.Spec.Hard) || !quota.Equals(n.Spec.Hard, n.Status.Hard) {
				c.enqueue(cur)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("watching resourcequotas: %w", err)
	}
	return c, nil
}

func (c *controller) enqueue(obj any) {
	if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

// enqueueAll queues every quota for a full recalculation.
func (c *controller) enqueueAll() {
	all, err := c.quotas.List(labels.Everything())
	if err != nil {
		c.logger.Warn("listing cached resourcequotas", "error", err)
		return
	}
	for _, q := range all {
		c.enqueue(q)
	}
}

// replenish queues the quotas of namespace that limit something gr's
// evaluator measures: an object of gr was deleted or stopped counting
// (a pod finished), and admission never gives charges back.
func (c *controller) replenish(gr schema.GroupResource, namespace string) {
	e := c.registry.Get(gr)
	if e == nil {
		return
	}
	qs, err := c.quotas.ResourceQuotas(namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, q := range qs {
		if len(e.MatchingResources(quota.ResourceNames(q.Status.Hard))) > 0 {
			c.enqueue(q)
		}
	}
}

func (c *controller) run(ctx context.Context) error {
	c.monitors.start(ctx)
	go c.every(ctx, c.cfg.ResyncPeriod.Duration, c.enqueueAll)
	go c.every(ctx, c.cfg.DiscoveryPeriod.Duration, func() {
		if c.monitors.discover(ctx, c.client.Discovery(), c.registry) {
			c.enqueueAll() // a quota may limit count/ of a resource that was just served
		}
	})
	sdk.RunWorkers(ctx, c.queue, c.cfg.Workers, c.reconcile, c.logger)
	return nil
}

// every runs fn now and then every period until ctx ends.
func (c *controller) every(ctx context.Context, period time.Duration, fn func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		fn()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reconcile sets a quota's status.hard to its spec.hard and status.used to
// the measured usage of each limited resource. Usage that could not be
// measured (a cache still syncing) keeps its last value and the quota is
// retried; everything measured is written anyway, so one slow resource
// does not hold the others back.
func (c *controller) reconcile(ctx context.Context, key string) (sdk.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return sdk.Result{}, nil
	}
	rq, err := c.quotas.ResourceQuotas(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, err
	}
	status, calcErr := c.status(rq)
	if !equality.Semantic.DeepEqual(rq.Spec.Hard, rq.Status.Hard) || rq.Status.Hard == nil || rq.Status.Used == nil ||
		!quota.Equals(status.Used, rq.Status.Used) {
		next := rq.DeepCopy()
		next.Status = status
		if _, err := c.client.CoreV1().ResourceQuotas(ns).UpdateStatus(ctx, next, metav1.UpdateOptions{}); err != nil {
			return sdk.Result{}, fmt.Errorf("updating the status of resourcequota %s: %w", key, err)
		}
		c.logger.Debug("updated quota status", "resourcequota", key)
	}
	if calcErr != nil {
		return sdk.Result{}, fmt.Errorf("measuring usage for resourcequota %s: %w", key, calcErr)
	}
	return sdk.Result{}, nil
}

// status is the status rq should have.
func (c *controller) status(rq *corev1.ResourceQuota) (corev1.ResourceQuotaStatus, error) {
	hard := quota.Add(corev1.ResourceList{}, rq.Spec.Hard)
	used := quota.Add(corev1.ResourceList{}, rq.Status.Used)
	measured, err := quota.CalculateUsage(rq.Namespace, rq.Spec.Scopes, hard, c.registry, rq.Spec.ScopeSelector)
	for name, v := range measured {
		used[name] = v
	}
	return corev1.ResourceQuotaStatus{Hard: hard, Used: quota.Mask(used, quota.ResourceNames(hard))}, err
}
