package horizontalpodautoscaler

import (
	"math"
	"sync"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// Without behavior, a scale-up is limited to max(2 x current, 4).
const (
	scaleUpLimitFactor  = 2.0
	scaleUpLimitMinimum = 4.0
)

type recommendation struct {
	replicas int32
	at       time.Time
}

type scaleEvent struct {
	change   int32
	at       time.Time
	outdated bool
}

// history is what the controller remembers of each HPA between syncs (in
// memory, as upstream: a new leader's plugin starts afresh): recent
// recommendations for stabilization, recent scale changes for policies.
type history struct {
	mu              sync.Mutex
	clock           clock.PassiveClock
	recommendations map[string][]recommendation
	ups, downs      map[string][]scaleEvent
}

func newHistory(clk clock.PassiveClock) *history {
	return &history{clock: clk, recommendations: map[string][]recommendation{},
		ups: map[string][]scaleEvent{}, downs: map[string][]scaleEvent{}}
}

// forget drops an HPA's history (it was deleted).
func (h *history) forget(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.recommendations, key)
	delete(h.ups, key)
	delete(h.downs, key)
}

// recordInitial makes the current scale the first recommendation, so a
// freshly started controller does not scale down at once.
func (h *history) recordInitial(key string, current int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.recommendations[key] == nil {
		h.recommendations[key] = []recommendation{{current, h.clock.Now()}}
	}
}

// store records rec, reusing the slot of one old enough (cutoff) to go.
func (h *history) store(key string, rec int32, old func(recommendation) bool) {
	for i, r := range h.recommendations[key] {
		if old(r) {
			h.recommendations[key][i] = recommendation{rec, h.clock.Now()}
			return
		}
	}
	h.recommendations[key] = append(h.recommendations[key], recommendation{rec, h.clock.Now()})
}

// stabilize (no behavior) is the highest recommendation within window,
// desired included.
func (h *history) stabilize(key string, desired int32, window time.Duration) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	cutoff := h.clock.Now().Add(-window)
	highest := desired
	for _, r := range h.recommendations[key] {
		if !r.at.Before(cutoff) {
			highest = max(highest, r.replicas)
		}
	}
	h.store(key, desired, func(r recommendation) bool { return r.at.Before(cutoff) })
	return highest
}

// stabilizeWithBehavior keeps current unless every recommendation of the
// scale-up window is above it (then the lowest) or every one of the
// scale-down window is below it (then the highest); it returns the
// condition reason and message upstream reports when it held back.
func (h *history) stabilizeWithBehavior(key string, current, desired int32, up, down time.Duration) (int32, string, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.clock.Now()
	upCutoff, downCutoff := now.Add(-up), now.Add(-down)
	upRec, downRec := desired, desired
	for _, r := range h.recommendations[key] {
		if r.at.After(upCutoff) {
			upRec = min(upRec, r.replicas)
		}
		if r.at.After(downCutoff) {
			downRec = max(downRec, r.replicas)
		}
	}
	rec := min(max(current, upRec), downRec)
	h.store(key, desired, func(r recommendation) bool { return r.at.Before(upCutoff) && r.at.Before(downCutoff) })
	if desired >= current {
		return rec, "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation"
	}
	return rec, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"
}

// recordScale remembers a rescale for the policies' periods (only with
// behavior: nothing reads it otherwise).
func (h *history) recordScale(key string, b *autoscalingv2.HorizontalPodAutoscalerBehavior, from, to int32) {
	if b == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	events, rules, change := h.ups, b.ScaleUp, to-from
	if to < from {
		events, rules, change = h.downs, b.ScaleDown, from-to
	}
	cutoff := h.clock.Now().Add(-time.Duration(longestPeriod(rules)) * time.Second)
	list := events[key]
	reuse := -1
	for i := range list {
		if list[i].at.Before(cutoff) {
			list[i].outdated = true
		}
		if list[i].outdated {
			reuse = i
		}
	}
	ev := scaleEvent{change: change, at: h.clock.Now()}
	if reuse >= 0 {
		list[reuse] = ev
	} else {
		list = append(list, ev)
	}
	events[key] = list
}

func longestPeriod(rules *autoscalingv2.HPAScalingRules) int32 {
	var longest int32
	if rules == nil {
		return 0
	}
	for _, p := range rules.Policies {
		longest = max(longest, p.PeriodSeconds)
	}
	return longest
}

// changedWithin sums the changes of events within the last period seconds.
func (h *history) changedWithin(events []scaleEvent, periodSeconds int32) int32 {
	cutoff := h.clock.Now().Add(-time.Duration(periodSeconds) * time.Second)
	var sum int32
	for _, e := range events {
		if e.at.After(cutoff) {
			sum += e.change
		}
	}
	return sum
}

// scaleUpLimit is the most replicas rules allow now: each policy measured
// from the count at the start of its period, the policies combined by
// selectPolicy (Disabled: no change).
func (h *history) scaleUpLimit(key string, current int32, rules *autoscalingv2.HPAScalingRules) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	sel := ptr.Deref(rules.SelectPolicy, autoscalingv2.MaxChangePolicySelect)
	if sel == autoscalingv2.DisabledPolicySelect {
		return current
	}
	result, pick := int32(math.MinInt32), func(a, b int32) int32 { return max(a, b) }
	if sel == autoscalingv2.MinChangePolicySelect {
		result, pick = math.MaxInt32, func(a, b int32) int32 { return min(a, b) }
	}
	for _, p := range rules.Policies {
		start := current - h.changedWithin(h.ups[key], p.PeriodSeconds) + h.changedWithin(h.downs[key], p.PeriodSeconds)
		var proposed int32
		switch p.Type {
		case autoscalingv2.PodsScalingPolicy:
			proposed = start + p.Value
		case autoscalingv2.PercentScalingPolicy:
			proposed = int32(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		}
		result = pick(result, proposed)
	}
	return result
}

// scaleDownLimit is the fewest replicas rules allow now.
func (h *history) scaleDownLimit(key string, current int32, rules *autoscalingv2.HPAScalingRules) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	sel := ptr.Deref(rules.SelectPolicy, autoscalingv2.MaxChangePolicySelect)
	if sel == autoscalingv2.DisabledPolicySelect {
		return current
	}
	result, pick := int32(math.MaxInt32), func(a, b int32) int32 { return min(a, b) }
	if sel == autoscalingv2.MinChangePolicySelect {
		result, pick = math.MinInt32, func(a, b int32) int32 { return max(a, b) }
	}
	for _, p := range rules.Policies {
		start := current - h.changedWithin(h.ups[key], p.PeriodSeconds) + h.changedWithin(h.downs[key], p.PeriodSeconds)
		var proposed int32
		switch p.Type {
		case autoscalingv2.PodsScalingPolicy:
			proposed = start - p.Value
		case autoscalingv2.PercentScalingPolicy:
			proposed = int32(float64(start) * (1 - float64(p.Value)/100))
		}
		result = pick(result, proposed)
	}
	return result
}
