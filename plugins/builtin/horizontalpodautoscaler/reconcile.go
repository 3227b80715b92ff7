package horizontalpodautoscaler

import (
	"context"
	"errors"
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// reconcile makes one HPA sync: read the target's scale, propose a count
// from the metrics, stabilize and bound it, write it, and report status,
// conditions and events as upstream. hpa is the controller's own copy.
func (c *controller) reconcile(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler, key string) error {
	original := hpa.Status.DeepCopy()
	ref := fmt.Sprintf("%s/%s/%s", hpa.Spec.ScaleTargetRef.Kind, hpa.Namespace, hpa.Spec.ScaleTargetRef.Name)
	sc, gr, err := c.targets.get(ctx, hpa.Namespace, hpa.Spec.ScaleTargetRef)
	if err != nil {
		c.events.Event(hpa, corev1.EventTypeWarning, "FailedGetScale", err.Error())
		c.setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedGetScale", "the HPA controller was unable to get the target's current scale: %v", err)
		return errors.Join(fmt.Errorf("failed to query scale subresource for %s: %w", ref, err), c.updateStatusIfNeeded(ctx, original, hpa))
	}
	c.setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededGetScale", "the HPA controller was able to get the target's current scale")
	current := sc.Spec.Replicas
	c.history.recordInitial(key, current)
	minReplicas := ptr.Deref(hpa.Spec.MinReplicas, 1)

	var (
		desired  int32
		reason   string
		statuses []autoscalingv2.MetricStatus
		rescale  = true
		syncErr  error
	)
	switch {
	case current == 0 && !syncsFromZero(hpa, minReplicas):
		desired, rescale = 0, false
		c.setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")
	case current > hpa.Spec.MaxReplicas:
		desired, reason = hpa.Spec.MaxReplicas, "Current number of replicas above Spec.MaxReplicas"
	case current != 0 && current < minReplicas:
		desired, reason = minReplicas, "Current number of replicas below Spec.MinReplicas"
	default:
		var proposed int32
		var metric string
		proposed, metric, statuses, syncErr = c.proposeAll(ctx, hpa, sc)
		if proposed == -1 {
			c.setStatus(hpa, current, hpa.Status.DesiredReplicas, statuses, false)
			c.events.Event(hpa, corev1.EventTypeWarning, "FailedComputeMetricsReplicas", syncErr.Error())
			return errors.Join(fmt.Errorf("failed to compute desired number of replicas based on listed metrics for %s: %w", ref, syncErr),
				c.updateStatusIfNeeded(ctx, original, hpa))
		}
		desired, reason = c.decide(hpa, key, current, proposed, minReplicas, metric)
		if current == 0 && minReplicas != 0 && scaledToZero(hpa) && desired < minReplicas {
			// Back from zero: at least the minimum.
			desired = minReplicas
			if reason == "" {
				reason = "Current number of replicas below Spec.MinReplicas"
			}
		}
		rescale = desired != current
	}
	if rescale {
		if err := c.writeScale(ctx, hpa, sc, gr, desired); err != nil {
			c.events.Eventf(hpa, corev1.EventTypeWarning, "FailedRescale", "New size: %d; reason: %s; error: %v", desired, reason, err.Error())
			c.setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedUpdateScale", "the HPA controller was unable to update the target scale: %v", err)
			c.setStatus(hpa, current, hpa.Status.DesiredReplicas, statuses, false)
			return errors.Join(fmt.Errorf("failed to rescale %s: %w", ref, err), c.updateStatusIfNeeded(ctx, original, hpa))
		}
		c.setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededRescale", "the HPA controller was able to update the target scale to %d", desired)
		c.events.Eventf(hpa, corev1.EventTypeNormal, "SuccessfulRescale", "New size: %d; reason: %s", desired, reason)
		c.history.recordScale(key, hpa.Spec.Behavior, current, desired)
		c.reportScaledToZero(hpa, current, desired, minReplicas)
		c.logger.Info("rescaled", "hpa", key, "target", ref, "from", current, "to", desired, "reason", reason)
	} else {
		desired = current
	}
	c.setStatus(hpa, current, desired, statuses, rescale)
	return errors.Join(syncErr, c.updateStatusIfNeeded(ctx, original, hpa))
}

// decide turns the metrics' proposal into the count to scale to, and the
// rescale reason.
func (c *controller) decide(hpa *autoscalingv2.HorizontalPodAutoscaler, key string, current, proposed, minReplicas int32, metric string) (int32, string) {
	var desired int32
	var reason, rescaleMetric string
	if proposed > desired {
		desired, rescaleMetric = proposed, metric
	}
	if desired > current {
		reason = rescaleMetric + " above target"
	}
	if desired < current {
		reason = "All metrics below target"
	}
	if hpa.Spec.Behavior == nil {
		return c.normalize(hpa, key, current, desired, minReplicas), reason
	}
	return c.normalizeWithBehavior(hpa, key, current, desired, minReplicas), reason
}

// proposeAll is the highest proposal of the HPA's metrics. Failed metrics
// are tolerated while another proposes a scale-up (a partial picture may
// scale up, never down); otherwise the first failure's condition is set
// and -1 returned.
func (c *controller) proposeAll(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler, sc *autoscalingv1.Scale) (int32, string, []autoscalingv2.MetricStatus, error) {
	sel, err := c.parseSelector(hpa, sc.Status.Selector)
	if err != nil {
		return -1, "", nil, err
	}
	t := target{specReplicas: sc.Spec.Replicas, statusReplicas: sc.Status.Replicas, selector: sel}
	statuses := make([]autoscalingv2.MetricStatus, len(hpa.Spec.Metrics))
	var replicas int32
	var metric string
	var firstErr *metricError
	invalid := 0
	for i, spec := range hpa.Spec.Metrics {
		p, merr := c.proposeFor(ctx, hpa, spec, t)
		if merr != nil {
			c.events.Event(hpa, corev1.EventTypeWarning, merr.reason, merr.err.Error())
			if firstErr == nil {
				firstErr = merr
			}
			invalid++
			continue
		}
		statuses[i] = p.status
		if replicas == 0 || p.replicas > replicas {
			replicas, metric = p.replicas, p.name
		}
	}
	var invalidErr error
	if firstErr != nil {
		invalidErr = fmt.Errorf("invalid metrics (%v invalid out of %v), first error is: %w", invalid, len(hpa.Spec.Metrics), firstErr)
	}
	if invalid >= len(hpa.Spec.Metrics) || (invalid > 0 && replicas < t.specReplicas) {
		c.setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, firstErr.reason, "the HPA was unable to compute the replica count: %v", firstErr.err)
		return -1, "", statuses, invalidErr
	}
	c.setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionTrue, "ValidMetricFound", "the HPA was able to successfully calculate a replica count from %s", metric)
	return replicas, metric, statuses, invalidErr
}

// writeScale sets the target's replicas, re-reading the scale on a conflict.
func (c *controller) writeScale(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler, sc *autoscalingv1.Scale, gr schema.GroupResource, desired int32) error {
	scales := c.targets.scales.Scales(hpa.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sc.Spec.Replicas = desired
		_, err := scales.Update(ctx, gr, sc, metav1.UpdateOptions{})
		if err == nil {
			return nil
		}
		if latest, getErr := scales.Get(ctx, gr, hpa.Spec.ScaleTargetRef.Name, metav1.GetOptions{}); getErr == nil {
			sc = latest
		}
		return err
	})
}

// setStatus sets the status fields; lastScaleTime moves on a rescale.
func (c *controller) setStatus(hpa *autoscalingv2.HorizontalPodAutoscaler, current, desired int32, metrics []autoscalingv2.MetricStatus, rescaled bool) {
	hpa.Status = autoscalingv2.HorizontalPodAutoscalerStatus{
		CurrentReplicas:    current,
		DesiredReplicas:    desired,
		LastScaleTime:      hpa.Status.LastScaleTime,
		CurrentMetrics:     metrics,
		Conditions:         hpa.Status.Conditions,
		ObservedGeneration: ptr.To(hpa.Generation),
	}
	if rescaled {
		now := metav1.NewTime(c.clock.Now())
		hpa.Status.LastScaleTime = &now
	}
}

func (c *controller) updateStatusIfNeeded(ctx context.Context, original *autoscalingv2.HorizontalPodAutoscalerStatus, hpa *autoscalingv2.HorizontalPodAutoscaler) error {
	if equality.Semantic.DeepEqual(original, &hpa.Status) {
		return nil
	}
	out, err := c.client.AutoscalingV2().HorizontalPodAutoscalers(hpa.Namespace).UpdateStatus(ctx, hpa, metav1.UpdateOptions{})
	if err != nil {
		c.events.Event(hpa, corev1.EventTypeWarning, "FailedUpdateStatus", err.Error())
		return fmt.Errorf("failed to update status for %s: %w", hpa.Name, err)
	}
	c.fresh.WroteFor(out, hpasCache, out.ResourceVersion)
	return nil
}
