package horizontalpodautoscaler

import (
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

func rules(sel autoscalingv2.ScalingPolicySelect, window int32, policies ...autoscalingv2.HPAScalingPolicy) *autoscalingv2.HPAScalingRules {
	return &autoscalingv2.HPAScalingRules{SelectPolicy: &sel, StabilizationWindowSeconds: ptr.To(window), Policies: policies}
}

func podsPolicy(v, period int32) autoscalingv2.HPAScalingPolicy {
	return autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PodsScalingPolicy, Value: v, PeriodSeconds: period}
}

func percent(v, period int32) autoscalingv2.HPAScalingPolicy {
	return autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PercentScalingPolicy, Value: v, PeriodSeconds: period}
}

// TestScalingLimits: each policy measured from the count at the start of
// its period, combined by selectPolicy.
func TestScalingLimits(t *testing.T) {
	type change struct {
		ago      time.Duration
		from, to int32
	}
	cases := []struct {
		name    string
		up      bool
		current int32
		rules   *autoscalingv2.HPAScalingRules
		history []change
		want    int32
	}{
		{name: "up: max of pods and percent", up: true, current: 10, rules: rules(autoscalingv2.MaxChangePolicySelect, 0, podsPolicy(4, 60), percent(100, 60)), want: 20},
		{name: "up: min of pods and percent", up: true, current: 10, rules: rules(autoscalingv2.MinChangePolicySelect, 0, podsPolicy(4, 60), percent(100, 60)), want: 14},
		{name: "up: disabled", up: true, current: 10, rules: rules(autoscalingv2.DisabledPolicySelect, 0, podsPolicy(4, 60)), want: 10},
		{name: "up: percent rounds up", up: true, current: 3, rules: rules(autoscalingv2.MaxChangePolicySelect, 0, percent(10, 60)), want: 4},
		{name: "up: change within the period counts", up: true, current: 2, rules: rules(autoscalingv2.MaxChangePolicySelect, 0, podsPolicy(1, 60)),
			history: []change{{10 * time.Second, 1, 2}}, want: 2},
		{name: "up: change before the period does not", up: true, current: 2, rules: rules(autoscalingv2.MaxChangePolicySelect, 0, podsPolicy(1, 60)),
			history: []change{{61 * time.Second, 1, 2}}, want: 3},
		{name: "up: a scale-down within the period raises the start", up: true, current: 4, rules: rules(autoscalingv2.MaxChangePolicySelect, 0, podsPolicy(2, 60)),
			history: []change{{10 * time.Second, 6, 4}}, want: 8},
		{name: "down: min of pods and percent (max change)", current: 10, rules: rules(autoscalingv2.MaxChangePolicySelect, 0, podsPolicy(4, 60), percent(50, 60)), want: 5},
		{name: "down: min change", current: 10, rules: rules(autoscalingv2.MinChangePolicySelect, 0, podsPolicy(4, 60), percent(50, 60)), want: 6},
		{name: "down: disabled", current: 10, rules: rules(autoscalingv2.DisabledPolicySelect, 0, percent(50, 60)), want: 10},
		{name: "down: percent rounds down", current: 3, rules: rules(autoscalingv2.MaxChangePolicySelect, 0, percent(50, 60)), want: 1},
		{name: "down: change within the period counts", current: 4, rules: rules(autoscalingv2.MaxChangePolicySelect, 0, percent(50, 60)),
			history: []change{{10 * time.Second, 8, 4}}, want: 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(testNow.Add(-time.Hour))
			h := newHistory(clk)
			b := &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: tc.rules, ScaleDown: tc.rules}
			for _, c := range tc.history {
				clk.SetTime(testNow.Add(-c.ago))
				h.recordScale("k", b, c.from, c.to)
			}
			clk.SetTime(testNow)
			var got int32
			if tc.up {
				got = h.scaleUpLimit("k", tc.current, tc.rules)
			} else {
				got = h.scaleDownLimit("k", tc.current, tc.rules)
			}
			if got != tc.want {
				t.Errorf("limit = %d; want %d", got, tc.want)
			}
		})
	}
}

// TestStabilizeWithBehavior: the scale-up window holds a rise until every
// recent recommendation is above current, the scale-down window a fall.
func TestStabilizeWithBehavior(t *testing.T) {
	clk := clocktesting.NewFakeClock(testNow)
	h := newHistory(clk)
	h.recordInitial("k", 3)
	if got, reason, _ := h.stabilizeWithBehavior("k", 3, 6, time.Minute, 0); got != 3 || reason != "ScaleUpStabilized" {
		t.Errorf("rise within the up window = %d %s; want 3 ScaleUpStabilized", got, reason)
	}
	clk.Step(30 * time.Second)
	if got, _, _ := h.stabilizeWithBehavior("k", 3, 8, time.Minute, 0); got != 3 {
		t.Errorf("rise with 3 in the window = %d; want 3", got)
	}
	clk.Step(31 * time.Second)
	if got, _, _ := h.stabilizeWithBehavior("k", 3, 9, time.Minute, 0); got != 8 {
		t.Errorf("rise once 3 and 6 left the window = %d; want the lowest recent, 8", got)
	}
	if got, reason, _ := h.stabilizeWithBehavior("k", 8, 2, 0, time.Minute); got != 8 || reason != "ScaleDownStabilized" {
		t.Errorf("fall within the down window = %d %s; want 8 ScaleDownStabilized", got, reason)
	}
}

// TestBehaviorScaleUpPolicy: a one-pod-per-minute policy scales 1 -> 2,
// holds within the minute, then 2 -> 3.
func TestBehaviorScaleUpPolicy(t *testing.T) {
	h := newHarness(t, 1, cpuHPA(func(hpa *autoscalingv2.HorizontalPodAutoscaler) {
		hpa.Spec.MaxReplicas = 10
		hpa.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleUp:   rules(autoscalingv2.MaxChangePolicySelect, 0, podsPolicy(1, 60)),
			ScaleDown: rules(autoscalingv2.MaxChangePolicySelect, 300, percent(100, 15)),
		}
	}))
	h.usage = 500
	hpa := h.sync(t)
	wantCondition(t, hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
	h.setPods(t, 2)
	h.clock.Step(15 * time.Second)
	h.sync(t)
	h.clock.Step(46 * time.Second)
	h.sync(t)
	if want := []int32{2, 3}; !equal(h.writes, want) {
		t.Fatalf("scale writes = %v; want %v", h.writes, want)
	}
}

// TestBehaviorScaleDownDisabled: selectPolicy Disabled never scales down,
// and says why.
func TestBehaviorScaleDownDisabled(t *testing.T) {
	h := newHarness(t, 3, cpuHPA(func(hpa *autoscalingv2.HorizontalPodAutoscaler) {
		hpa.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleUp:   rules(autoscalingv2.MaxChangePolicySelect, 0, podsPolicy(4, 15)),
			ScaleDown: rules(autoscalingv2.DisabledPolicySelect, 0, percent(100, 15)),
		}
	}))
	h.usage = 1
	hpa := h.sync(t)
	if len(h.writes) != 0 {
		t.Fatalf("scale writes = %v; want none", h.writes)
	}
	wantCondition(t, hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate")
	wantCondition(t, hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "ReadyForNewScale", "recommended size matches current size")
}

// TestBehaviorDefaultDownWindow: a scaleDown rule without a window uses
// the configured downscale stabilization.
func TestBehaviorDefaultDownWindow(t *testing.T) {
	h := newHarness(t, 3, cpuHPA(func(hpa *autoscalingv2.HorizontalPodAutoscaler) {
		hpa.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleUp:   rules(autoscalingv2.MaxChangePolicySelect, 0, podsPolicy(4, 15)),
			ScaleDown: &autoscalingv2.HPAScalingRules{SelectPolicy: ptr.To(autoscalingv2.MaxChangePolicySelect), Policies: []autoscalingv2.HPAScalingPolicy{percent(100, 15)}},
		}
	}))
	h.c.cfg.DownscaleStabilization.Duration = 30 * time.Second
	h.usage = 1
	hpa := h.sync(t)
	wantCondition(t, hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation")
	h.clock.Step(31 * time.Second)
	h.sync(t)
	if want := []int32{1}; !equal(h.writes, want) {
		t.Fatalf("scale writes = %v; want %v", h.writes, want)
	}
}

// TestBehaviorTolerance: behavior.scaleUp.tolerance overrides the
// configured 10%.
func TestBehaviorTolerance(t *testing.T) {
	for _, tc := range []struct {
		tolerance *resource.Quantity
		want      []int32
	}{{nil, nil}, {resource.NewMilliQuantity(10, resource.DecimalSI), []int32{5}}} {
		h := newHarness(t, 4, cpuHPA(func(hpa *autoscalingv2.HorizontalPodAutoscaler) {
			hpa.Spec.MaxReplicas = 10
			up := rules(autoscalingv2.MaxChangePolicySelect, 0, podsPolicy(4, 15))
			up.Tolerance = tc.tolerance
			hpa.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: up, ScaleDown: rules(autoscalingv2.MaxChangePolicySelect, 0, percent(100, 15))}
		}))
		h.usage = 53 // 106% of target
		h.sync(t)
		if !equal(h.writes, tc.want) {
			t.Errorf("tolerance %v: scale writes = %v; want %v", tc.tolerance, h.writes, tc.want)
		}
	}
}

func equal(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
