package horizontalpodautoscaler

import (
	"context"
	"fmt"
	"log/slog"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/builtin/internal/freshness"
	"github.com/keelson/keelson/plugins/sdk"
)

// controller syncs every HPA each sync period.
type controller struct {
	cfg       Config
	client    kubernetes.Interface
	hpas      autoscalinglisters.HorizontalPodAutoscalerLister
	pods      corelisters.PodLister
	targets   *scaleTargets
	calc      *calculator
	history   *history
	selectors *selectors
	queue     workqueue.TypedRateLimitingInterface[string]
	events    record.EventRecorder
	clock     clock.Clock
	logger    *slog.Logger
	// fresh holds a sync back until the HPA cache has seen this
	// controller's own status write (upstream's
	// StaleControllerConsistencyHPA, on since 1.37).
	fresh *freshness.Guard
}

// hpasCache names the cache the freshness guard watches.
const hpasCache = "horizontalpodautoscalers"

// newController registers the HPA and pod informers on f.
func newController(cfg Config, client kubernetes.Interface, f informers.SharedInformerFactory, targets *scaleTargets,
	metrics metricsSource, events record.EventRecorder, clk clock.WithTicker, logger *slog.Logger) (*controller, error) {
	hpaInf := f.Autoscaling().V2().HorizontalPodAutoscalers()
	podInf := f.Core().V1().Pods()
	c := &controller{
		cfg: cfg, client: client, hpas: hpaInf.Lister(), pods: podInf.Lister(), targets: targets,
		calc: &calculator{metrics: metrics, pods: podInf.Lister(), clock: clk,
			cpuInit: cfg.CPUInitializationPeriod.Duration, readinessDelay: cfg.InitialReadinessDelay.Duration},
		history: newHistory(clk), selectors: newSelectors(),
		queue:  sdk.NewQueue[string](Name, sdk.WithClock(clk)),
		events: events, clock: clk, logger: logger,
		fresh: freshness.New(map[string]freshness.Cache{hpasCache: hpaInf.Informer().GetStore()}),
	}
	if _, err := hpaInf.Informer().AddEventHandler(c.hpaEvents()); err != nil {
		return nil, fmt.Errorf("watching horizontalpodautoscalers: %w", err)
	}
	// The pod informer only feeds the lister: pods are read at each sync.
	podInf.Informer()
	return c, nil
}

// hpaEvents syncs a new HPA and one whose spec changed at once; any other
// update (the controller's own status write) waits for the sync period,
// as upstream does to avoid a hot loop.
func (c *controller) hpaEvents() cache.ResourceEventHandlerFuncs {
	key := func(obj any) (string, bool) {
		k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		return k, err == nil
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if k, ok := key(obj); ok {
				c.queue.Add(k)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			k, ok := key(newObj)
			if !ok {
				return
			}
			o, _ := oldObj.(*autoscalingv2.HorizontalPodAutoscaler)
			n, _ := newObj.(*autoscalingv2.HorizontalPodAutoscaler)
			if o != nil && n != nil && o.Generation != n.Generation {
				c.queue.Add(k)
				return
			}
			c.queue.AddAfter(k, c.cfg.SyncPeriod.Duration)
		},
		DeleteFunc: func(obj any) {
			if k, ok := key(obj); ok {
				c.queue.Add(k)
			}
		},
	}
}

func (c *controller) run(ctx context.Context, workers int) {
	c.logger.Info("controller started", "workers", workers, "syncPeriod", c.cfg.SyncPeriod.Duration,
		"downscaleStabilization", c.cfg.DownscaleStabilization.Duration, "tolerance", c.cfg.Tolerance)
	sdk.RunWorkers(ctx, c.queue, workers, c.sync, c.logger, sdk.WithExpectedErrors(freshness.IsStale))
}

// sync reconciles one HPA and schedules its next sync; a failed sync is
// logged and retried at the next period, as upstream (no backoff: the
// metrics an HPA waits for arrive on their own schedule).
func (c *controller) sync(ctx context.Context, key string) (sdk.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return sdk.Result{}, sdk.TerminalError(err)
	}
	if err := c.fresh.Ready(key); err != nil {
		return sdk.Result{}, err // retried once the cache has the status write
	}
	hpa, err := c.hpas.HorizontalPodAutoscalers(ns).Get(name)
	if err != nil {
		// Gone (or not yet in the cache, whose add event brings it back).
		c.history.forget(key)
		c.selectors.forget(ns, name)
		c.fresh.Forget(key)
		return sdk.Result{}, nil
	}
	if err := c.reconcile(ctx, hpa.DeepCopy(), key); err != nil {
		c.logger.Warn("horizontal pod autoscaler sync failed", "hpa", key, "error", err)
	}
	return sdk.Result{RequeueAfter: c.cfg.SyncPeriod.Duration}, nil
}

// transform keeps of a pod what the replica calculator reads; other
// objects (HPAs) lose only their managed fields.
func transform(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return sdk.StripManagedFields(obj)
	}
	s := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, Labels: p.Labels,
			ResourceVersion: p.ResourceVersion, DeletionTimestamp: p.DeletionTimestamp},
		Spec:   corev1.PodSpec{Resources: p.Spec.Resources, Overhead: p.Spec.Overhead},
		Status: corev1.PodStatus{Phase: p.Status.Phase, StartTime: p.Status.StartTime},
	}
	for _, ct := range p.Spec.Containers {
		s.Spec.Containers = append(s.Spec.Containers, corev1.Container{Name: ct.Name, Resources: corev1.ResourceRequirements{Requests: ct.Resources.Requests}})
	}
	for _, ct := range p.Spec.InitContainers {
		if ct.RestartPolicy != nil && *ct.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			s.Spec.InitContainers = append(s.Spec.InitContainers, corev1.Container{Name: ct.Name, RestartPolicy: ct.RestartPolicy,
				Resources: corev1.ResourceRequirements{Requests: ct.Resources.Requests}})
		}
	}
	if r := readyCondition(p); r != nil {
		s.Status.Conditions = []corev1.PodCondition{{Type: r.Type, Status: r.Status, LastTransitionTime: r.LastTransitionTime}}
	}
	return s, nil
}

// PodTransform is the transform the plugin's informers run, pods among
// them (BenchmarkPodCacheBytes in plugins/builtin measures it).
var PodTransform = transform
