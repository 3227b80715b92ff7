package horizontalpodautoscaler

import (
	"math"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/utils/ptr"
)

// normalize (an HPA without behavior) stabilizes desired over the
// downscale window, then bounds it by min/max replicas and the default
// scale-up rate.
func (c *controller) normalize(hpa *autoscalingv2.HorizontalPodAutoscaler, key string, current, desired, minReplicas int32) int32 {
	stable := c.history.stabilize(key, desired, c.cfg.DownscaleStabilization.Duration)
	c.stabilized(hpa, stable, desired, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation")
	final, reason, message := boundByRules(current, stable, minReplicas, hpa.Spec.MaxReplicas)
	c.limit(hpa, final, stable, reason, message)
	return final
}

func boundByRules(current, desired, minReplicas, maxReplicas int32) (int32, string, string) {
	upLimit := int32(math.Max(scaleUpLimitFactor*float64(current), scaleUpLimitMinimum))
	highest, reason, message := maxReplicas, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
	if maxReplicas > upLimit {
		highest, reason, message = upLimit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
	}
	switch {
	case desired < minReplicas:
		return minReplicas, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
	case desired > highest:
		return highest, reason, message
	}
	return desired, "DesiredWithinRange", "the desired count is within the acceptable range"
}

// normalizeWithBehavior stabilizes desired over the behavior's windows
// (scaleDown's defaulting to the configured downscale stabilization),
// then bounds it by min/max replicas and the behavior's policies.
func (c *controller) normalizeWithBehavior(hpa *autoscalingv2.HorizontalPodAutoscaler, key string, current, desired, minReplicas int32) int32 {
	up, down := scalingRules(hpa.Spec.Behavior, c.cfg.DownscaleStabilization.Duration)
	upWindow := time.Duration(ptr.Deref(up.StabilizationWindowSeconds, 0)) * time.Second
	downWindow := time.Duration(*down.StabilizationWindowSeconds) * time.Second
	stable, reason, message := c.history.stabilizeWithBehavior(key, current, desired, upWindow, downWindow)
	c.stabilized(hpa, stable, desired, reason, message)
	final, reason, message := c.boundByBehavior(key, current, stable, minReplicas, hpa.Spec.MaxReplicas, up, down)
	c.limit(hpa, final, stable, reason, message)
	return final
}

// scalingRules returns the behavior's rules with the API server's
// defaults filled in where a rule set is missing, and the scale-down
// window defaulted to the configured one, as upstream.
func scalingRules(b *autoscalingv2.HorizontalPodAutoscalerBehavior, downWindow time.Duration) (up, down *autoscalingv2.HPAScalingRules) {
	up, down = b.ScaleUp, b.ScaleDown
	if up == nil {
		up = &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](0), Policies: []autoscalingv2.HPAScalingPolicy{
			{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
			{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}}}
	}
	if down == nil {
		down = &autoscalingv2.HPAScalingRules{Policies: []autoscalingv2.HPAScalingPolicy{
			{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}}}
	}
	if down.StabilizationWindowSeconds == nil {
		down = down.DeepCopy()
		down.StabilizationWindowSeconds = ptr.To(int32(downWindow.Seconds()))
	}
	return up, down
}

func (c *controller) boundByBehavior(key string, current, desired, minReplicas, maxReplicas int32, up, down *autoscalingv2.HPAScalingRules) (int32, string, string) {
	switch {
	case desired > current:
		upLimit := max(c.history.scaleUpLimit(key, current, up), current)
		highest, reason, message := maxReplicas, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
		if maxReplicas > upLimit {
			highest, reason, message = upLimit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
		}
		if desired > highest {
			return highest, reason, message
		}
	case desired < current:
		downLimit := min(c.history.scaleDownLimit(key, current, down), current)
		lowest, reason, message := minReplicas, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
		if minReplicas < downLimit {
			lowest, reason, message = downLimit, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
		}
		if desired < lowest {
			return lowest, reason, message
		}
	}
	return desired, "DesiredWithinRange", "the desired count is within the acceptable range"
}
