// Package ttlafterfinished is the built-in TTL-after-finished controller
// plugin: it deletes a Job whose spec.ttlSecondsAfterFinished has passed
// since it finished (its Complete or Failed condition), with foreground
// propagation so its pods go first, as kube-controller-manager's
// ttl-after-finished controller does. The Job is read afresh from the API
// server before the delete, which is conditioned on what was read, so a
// Job whose TTL was changed meanwhile is not deleted.
package ttlafterfinished

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin ttlafterfinished`).
const Name = "ttlafterfinished"

const version = "0.1.0"

// Config is the plugin's configuration section.
type Config struct {
	// Workers is how many Jobs are looked at once (default 5, as
	// kube-controller-manager's --concurrent-ttl-after-finished-syncs).
	Workers int `json:"workers"`
}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.Plugin{Name: Name, Kind: sdk.KindController, Version: version, ManualReady: true}
	p.Run = func(ctx context.Context, env sdk.Env) error {
		cfg := Config{Workers: 5}
		if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
			return fmt.Errorf("plugin %s: %w", Name, err)
		}
		if cfg.Workers < 1 || cfg.Workers > 64 {
			return fmt.Errorf("plugin %s config: workers is %d: set it between 1 and 64", Name, cfg.Workers)
		}
		setup := func(ctx context.Context, env sdk.Env, client kubernetes.Interface, factory informers.SharedInformerFactory) (func(context.Context) error, error) {
			c, err := New(client, factory, env.Logger, clock.RealClock{})
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context) error { c.Run(ctx, cfg.Workers); return nil }, nil
		}
		return sdk.InformerPlugin(Name, version, setup, informers.WithTransform(Transform)).Run(ctx, env)
	}
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get", "list", "watch", "delete"}},
		sdk.EventRule,
	}
	return p
}

// Transform keeps of a Job its identity, deletion, TTL and conditions.
func Transform(obj any) (any, error) {
	j, ok := obj.(*batchv1.Job)
	if !ok {
		return obj, nil
	}
	s := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: j.Name, Namespace: j.Namespace, UID: j.UID,
			ResourceVersion: j.ResourceVersion, DeletionTimestamp: j.DeletionTimestamp},
		Spec: batchv1.JobSpec{TTLSecondsAfterFinished: j.Spec.TTLSecondsAfterFinished},
	}
	for _, c := range j.Status.Conditions {
		s.Status.Conditions = append(s.Status.Conditions, batchv1.JobCondition{Type: c.Type, Status: c.Status, LastTransitionTime: c.LastTransitionTime})
	}
	return s, nil
}

// Controller deletes expired finished Jobs.
type Controller struct {
	client kubernetes.Interface
	logger *slog.Logger
	clock  clock.Clock
	jobs   cache.SharedIndexInformer
	queue  workqueue.TypedRateLimitingInterface[string]
}

// New registers the Job informer on factory and returns the controller.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, logger *slog.Logger, clk clock.Clock) (*Controller, error) {
	c := &Controller{client: client, logger: logger, clock: clk,
		jobs: factory.Batch().V1().Jobs().Informer(), queue: sdk.NewQueue[string]("ttlafterfinished")}
	add := func(obj any) {
		if j, ok := obj.(*batchv1.Job); ok && needsCleanup(j) {
			c.queue.Add(cache.MetaObjectToName(j).String())
		}
	}
	if _, err := c.jobs.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, o any) { add(o) }}); err != nil {
		return nil, fmt.Errorf("watching jobs: %w", err)
	}
	return c, nil
}

// Run works until ctx is cancelled.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.logger.Info("controller started", "workers", workers)
	sdk.RunWorkers(ctx, c.queue, workers, c.sync, c.logger)
}

// needsCleanup: a TTL is set, the Job finished and is not being deleted.
func needsCleanup(j *batchv1.Job) bool {
	return j.Spec.TTLSecondsAfterFinished != nil && j.DeletionTimestamp == nil && finishTime(j) != nil
}

func finishTime(j *batchv1.Job) *time.Time {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			t := c.LastTransitionTime.Time
			return &t
		}
	}
	return nil
}

// remaining is how long until j expires (zero or less: expired).
func remaining(j *batchv1.Job, now time.Time) time.Duration {
	return finishTime(j).Add(time.Duration(*j.Spec.TTLSecondsAfterFinished) * time.Second).Sub(now)
}

func (c *Controller) sync(ctx context.Context, key string) (sdk.Result, error) {
	obj, ok, err := c.jobs.GetIndexer().GetByKey(key)
	if err != nil || !ok {
		return sdk.Result{}, err
	}
	j := obj.(*batchv1.Job)
	if !needsCleanup(j) {
		return sdk.Result{}, nil
	}
	if left := remaining(j, c.clock.Now()); left > 0 {
		return sdk.Result{RequeueAfter: left}, nil
	}
	// The cache may be stale (the TTL was raised, the Job re-created):
	// decide on a fresh read, and delete only what was read.
	fresh, err := c.client.BatchV1().Jobs(j.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, fmt.Errorf("reading job %s: %w", key, err)
	}
	if !needsCleanup(fresh) {
		return sdk.Result{}, nil
	}
	if left := remaining(fresh, c.clock.Now()); left > 0 {
		return sdk.Result{RequeueAfter: left}, nil
	}
	fg := metav1.DeletePropagationForeground
	err = c.client.BatchV1().Jobs(fresh.Namespace).Delete(ctx, fresh.Name, metav1.DeleteOptions{
		PropagationPolicy: &fg,
		Preconditions:     &metav1.Preconditions{UID: &fresh.UID, ResourceVersion: &fresh.ResourceVersion},
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return sdk.Result{}, fmt.Errorf("deleting expired job %s: %w", key, err)
	}
	if err == nil {
		c.logger.Info("deleted job past its ttlSecondsAfterFinished", "job", key, "ttl", *fresh.Spec.TTLSecondsAfterFinished)
	}
	return sdk.Result{}, nil
}
