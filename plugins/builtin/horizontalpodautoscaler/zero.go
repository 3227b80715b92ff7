package horizontalpodautoscaler

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
)

// Scaling to and from zero is upstream's HPAScaleToZero feature (beta and
// on by default in 1.37, so kube-apiserver accepts minReplicas: 0): an HPA
// with minReplicas 0 and an Object or External metric (which, unlike pod
// metrics, still have values with no pods) may scale its target to zero,
// which the ScaledToZero condition remembers; only such a target is synced
// from zero. Any other target at zero replicas is left alone
// (ScalingDisabled): someone scaled it down by hand.

// hasObjectOrExternal reports whether hpa has a metric that exists
// without pods.
func hasObjectOrExternal(hpa *autoscalingv2.HorizontalPodAutoscaler) bool {
	for _, m := range hpa.Spec.Metrics {
		if m.Type == autoscalingv2.ObjectMetricSourceType || m.Type == autoscalingv2.ExternalMetricSourceType {
			return true
		}
	}
	return false
}

// scaledToZero reports whether this controller scaled hpa's target to zero.
func scaledToZero(hpa *autoscalingv2.HorizontalPodAutoscaler) bool {
	for _, c := range hpa.Status.Conditions {
		if c.Type == autoscalingv2.ScaledToZero {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// syncsFromZero reports whether a target at zero replicas is synced: one
// this controller scaled to zero, which either comes back to a non-zero
// minimum or follows its Object/External metrics.
func syncsFromZero(hpa *autoscalingv2.HorizontalPodAutoscaler, minReplicas int32) bool {
	z := scaledToZero(hpa)
	return (minReplicas != 0 && z) || (z && hasObjectOrExternal(hpa))
}

// reportScaledToZero sets ScaledToZero after a rescale.
func (c *controller) reportScaledToZero(hpa *autoscalingv2.HorizontalPodAutoscaler, current, desired, minReplicas int32) {
	if current > 0 && desired == 0 && minReplicas == 0 && hasObjectOrExternal(hpa) {
		c.setCondition(hpa, autoscalingv2.ScaledToZero, corev1.ConditionTrue, "ScaledToZero", "the HPA controller scaled the workload to zero")
		return
	}
	c.setCondition(hpa, autoscalingv2.ScaledToZero, corev1.ConditionFalse, "NotScaledToZero", "the HPA controller did not scale the workload to zero")
}
