package horizontalpodautoscaler

import (
	"fmt"
	"math"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// setCondition sets a condition of hpa's status; its transition time
// moves only when its status changes.
func setCondition(hpa *autoscalingv2.HorizontalPodAutoscaler, t autoscalingv2.HorizontalPodAutoscalerConditionType,
	status corev1.ConditionStatus, reason, format string, args ...any) {
	conds := hpa.Status.Conditions
	i := 0
	for i < len(conds) && conds[i].Type != t {
		i++
	}
	if i == len(conds) {
		conds = append(conds, autoscalingv2.HorizontalPodAutoscalerCondition{Type: t})
	}
	if conds[i].Status != status {
		conds[i].LastTransitionTime = metav1.Now()
	}
	conds[i].Status, conds[i].Reason, conds[i].Message = status, reason, fmt.Sprintf(format, args...)
	hpa.Status.Conditions = conds
}

// limit reports the ScalingLimited condition: True when the final count
// differs from the stabilized recommendation.
func limit(hpa *autoscalingv2.HorizontalPodAutoscaler, final, recommended int32, reason, message string) {
	status := corev1.ConditionFalse
	if final != recommended {
		status = corev1.ConditionTrue
	}
	setCondition(hpa, autoscalingv2.ScalingLimited, status, reason, "%s", message)
}

// stabilized reports AbleToScale after stabilization.
func stabilized(hpa *autoscalingv2.HorizontalPodAutoscaler, stable, desired int32, reason, message string) {
	if stable != desired {
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, reason, "%s", message)
		return
	}
	setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "ReadyForNewScale", "recommended size matches current size")
}

// normalize (an HPA without behavior) stabilizes desired over the
// downscale window, then bounds it by min/max replicas and the default
// scale-up rate.
func (c *controller) normalize(hpa *autoscalingv2.HorizontalPodAutoscaler, key string, current, desired, minReplicas int32) int32 {
	stable := c.history.stabilize(key, desired, c.cfg.DownscaleStabilization.Duration)
	stabilized(hpa, stable, desired, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation")
	final, reason, message := boundByRules(current, stable, minReplicas, hpa.Spec.MaxReplicas)
	limit(hpa, final, stable, reason, message)
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
	stabilized(hpa, stable, desired, reason, message)
	final, reason, message := c.boundByBehavior(key, current, stable, minReplicas, hpa.Spec.MaxReplicas, up, down)
	limit(hpa, final, stable, reason, message)
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
