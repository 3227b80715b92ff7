package disruption

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/internal/pods"
	"github.com/keelson/keelson/plugins/sdk"
)

// disruptionTarget returns p's DisruptionTarget condition, or nil.
func disruptionTarget(p *v1.Pod) *v1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == v1.DisruptionTarget {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// staleIn reports whether p carries a True DisruptionTarget condition
// although it is not being deleted, and how long until that condition
// counts as stale (staleDisruptionTimeout after it was set). The kubelet's
// condition (TerminationByKubelet) is never stale, as the pod may take any
// time to terminate; nor is one on a pod that already finished.
func (c *controller) staleIn(p *v1.Pod) (bool, time.Duration) {
	if p.DeletionTimestamp != nil || pods.IsTerminal(p) {
		return false, 0
	}
	cond := disruptionTarget(p)
	if cond == nil || cond.Status != v1.ConditionTrue || cond.Reason == v1.PodReasonTerminationByKubelet {
		return false, 0
	}
	return true, max(staleDisruptionTimeout-c.clock.Since(cond.LastTransitionTime.Time), 0)
}

func (c *controller) enqueueIfStale(p *v1.Pod) {
	if has, wait := c.staleIn(p); has {
		c.stale.AddAfter(cache.MetaObjectToName(p).String(), wait)
	}
}

// reconcileStalePod sets a stale DisruptionTarget condition to False. It
// decides on a fresh read of the pod (the cache keeps only part of its
// status) and writes it back whole, conditioned on that read.
func (c *controller) reconcileStalePod(ctx context.Context, key string) (sdk.Result, error) {
	obj, ok, err := c.pods.GetByKey(key)
	if err != nil || !ok {
		return sdk.Result{}, err
	}
	if has, wait := c.staleIn(obj.(*v1.Pod)); !has || wait > 0 {
		return sdk.Result{RequeueAfter: wait}, nil
	}
	cached := obj.(*v1.Pod)
	p, err := c.client.CoreV1().Pods(cached.Namespace).Get(ctx, cached.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, fmt.Errorf("reading pod %s: %w", key, err)
	}
	if has, wait := c.staleIn(p); !has || wait > 0 {
		return sdk.Result{RequeueAfter: wait}, nil
	}
	// As upstream, the condition is replaced whole: its reason and
	// message go with the True status.
	*disruptionTarget(p) = v1.PodCondition{
		Type:               v1.DisruptionTarget,
		Status:             v1.ConditionFalse,
		ObservedGeneration: p.Generation,
		LastTransitionTime: metav1.NewTime(c.clock.Now()),
	}
	if _, err := c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		return sdk.Result{}, fmt.Errorf("resetting the stale DisruptionTarget condition of pod %s: %w", key, err)
	}
	c.logger.Info("reset stale DisruptionTarget condition to False", "pod", key)
	return sdk.Result{}, nil
}
