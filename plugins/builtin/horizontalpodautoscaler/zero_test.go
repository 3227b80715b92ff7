package horizontalpodautoscaler

import (
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// TestScaleToZeroAndBack: with minReplicas 0 and an External metric, an
// idle queue scales the target to zero (ScaledToZero) and a busy one
// brings it back, as upstream's HPAScaleToZero feature (on in 1.37).
func TestScaleToZeroAndBack(t *testing.T) {
	h := newHarness(t, 2, cpuHPA(func(hpa *autoscalingv2.HorizontalPodAutoscaler) {
		hpa.Spec.MinReplicas = ptr.To[int32](0)
		hpa.Spec.MaxReplicas = 10
		hpa.Spec.Metrics = []autoscalingv2.MetricSpec{externalQueue(1000)}
		hpa.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleUp:   rules(autoscalingv2.MaxChangePolicySelect, 0, podsPolicy(4, 15)),
			ScaleDown: rules(autoscalingv2.MaxChangePolicySelect, 0, percent(100, 15)),
		}
	}))
	m := h.c.calc.metrics.(*apiMetrics)
	m.external = externalMetrics("queue", 0)
	hpa := h.sync(t)
	if !equal(h.writes, []int32{0}) {
		t.Fatalf("scale writes = %v; want [0]", h.writes)
	}
	wantCondition(t, hpa, autoscalingv2.ScaledToZero, corev1.ConditionTrue, "ScaledToZero", "the HPA controller scaled the workload to zero")

	h.setPods(t, 0)
	h.clock.Step(16 * time.Second)
	m.external = externalMetrics("queue", 3000)
	hpa = h.sync(t)
	if !equal(h.writes, []int32{0, 3}) {
		t.Fatalf("scale writes = %v; want [0 3]", h.writes)
	}
	wantCondition(t, hpa, autoscalingv2.ScaledToZero, corev1.ConditionFalse, "NotScaledToZero", "the HPA controller did not scale the workload to zero")
	wantCondition(t, hpa, autoscalingv2.ScalingActive, corev1.ConditionTrue, "ValidMetricFound", "the HPA was able to successfully calculate a replica count from external metric queue(nil)")
	ev := h.drainEvents()
	if len(ev) != 2 || ev[1] != "Normal SuccessfulRescale New size: 3; reason: external metric queue(nil) above target" {
		t.Errorf("events = %q", ev)
	}
}

// TestZeroWithoutScaledToZero: a target someone else scaled to zero stays
// there, even with minReplicas 0 and an External metric.
func TestZeroWithoutScaledToZero(t *testing.T) {
	h := newHarness(t, 0, cpuHPA(func(hpa *autoscalingv2.HorizontalPodAutoscaler) {
		hpa.Spec.MinReplicas = ptr.To[int32](0)
		hpa.Spec.Metrics = []autoscalingv2.MetricSpec{externalQueue(1000)}
	}))
	h.c.calc.metrics.(*apiMetrics).external = externalMetrics("queue", 5000)
	hpa := h.sync(t)
	if len(h.writes) != 0 {
		t.Fatalf("scale writes = %v; want none", h.writes)
	}
	wantCondition(t, hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")
}
