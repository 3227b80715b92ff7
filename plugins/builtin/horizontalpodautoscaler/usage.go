package horizontalpodautoscaler

import (
	"fmt"
	"math"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// objectReplicas proposes a count for an Object metric's Value target:
// the ratio of the object's value to the target, times the ready pods.
func (c *calculator) objectReplicas(current int32, target int64, name string, tol tolerances, namespace string,
	ref *autoscalingv2.CrossVersionObjectReference, selector, metricSelector labels.Selector) (int32, int64, time.Time, error) {
	usage, _, err := c.metrics.objectMetric(name, namespace, ref, metricSelector)
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("unable to get metric %s on %s %s/%s: %w", name, ref.Kind, namespace, ref.Name, err)
	}
	replicas, err := c.ratioReplicas(current, float64(usage)/float64(target), tol, namespace, selector)
	// Upstream reports no timestamp for object metrics.
	return replicas, usage, time.Time{}, err
}

// ratioReplicas scales the ready pods by ratio (from zero replicas: the
// ratio itself, rounded up).
func (c *calculator) ratioReplicas(current int32, ratio float64, tol tolerances, namespace string, selector labels.Selector) (int32, error) {
	if current == 0 {
		return int32(math.Ceil(ratio)), nil
	}
	if tol.within(ratio) {
		return current, nil
	}
	ready, err := c.readyPods(namespace, selector)
	if err != nil {
		return 0, fmt.Errorf("unable to calculate ready pods: %s", err)
	}
	return clampInt32(ratio * float64(ready)), nil
}

// readyPods counts the running, ready pods selector selects.
func (c *calculator) readyPods(namespace string, selector labels.Selector) (int64, error) {
	pods, err := c.listPods(namespace, selector)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range pods {
		if r := readyCondition(p); p.Status.Phase == corev1.PodRunning && r != nil && r.Status == corev1.ConditionTrue {
			n++
		}
	}
	return n, nil
}

// clampInt32 rounds f up, capped at the largest int32.
func clampInt32(f float64) int32 {
	if f > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(math.Ceil(f))
}

// objectPerPodReplicas proposes a count for an Object metric's
// AverageValue target: the object's value divided by the target.
func (c *calculator) objectPerPodReplicas(statusReplicas int32, target int64, name string, tol tolerances, namespace string,
	ref *autoscalingv2.CrossVersionObjectReference, metricSelector labels.Selector) (int32, int64, time.Time, error) {
	usage, ts, err := c.metrics.objectMetric(name, namespace, ref, metricSelector)
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("unable to get metric %s on %s %s/%s: %w", name, ref.Kind, namespace, ref.Name, err)
	}
	replicas := statusReplicas
	if !tol.within(float64(usage) / (float64(target) * float64(replicas))) {
		replicas = int32(math.Ceil(float64(usage) / float64(target)))
	}
	return replicas, perReplica(usage, statusReplicas), ts, nil
}

// perReplica is usage shared over replicas, rounded up (all of it when
// there are none: a target scaled to zero).
func perReplica(usage int64, replicas int32) int64 {
	if replicas == 0 {
		return usage
	}
	return int64(math.Ceil(float64(usage) / float64(replicas)))
}

// externalSum reads an external metric's values and sums them, saturating.
func (c *calculator) externalSum(name, namespace string, metricSelector *metav1.LabelSelector) (int64, time.Time, error) {
	sel, err := metav1.LabelSelectorAsSelector(metricSelector)
	if err != nil {
		return 0, time.Time{}, err
	}
	values, ts, err := c.metrics.externalMetric(name, namespace, sel)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("unable to get external metric %s/%s/%+v: %s", namespace, name, metricSelector, err)
	}
	var sum int64
	for _, v := range values {
		if v > 0 && sum > math.MaxInt64-v {
			return math.MaxInt64, ts, nil
		}
		sum += v
	}
	return sum, ts, nil
}

// externalReplicas proposes a count for an External metric's Value target.
func (c *calculator) externalReplicas(current int32, target int64, name string, tol tolerances, namespace string,
	metricSelector *metav1.LabelSelector, selector labels.Selector) (int32, int64, time.Time, error) {
	usage, _, err := c.externalSum(name, namespace, metricSelector)
	if err != nil {
		return 0, 0, time.Time{}, err
	}
	replicas, err := c.ratioReplicas(current, float64(usage)/float64(target), tol, namespace, selector)
	return replicas, usage, time.Time{}, err
}

// externalPerPodReplicas proposes a count for an External metric's
// AverageValue target.
func (c *calculator) externalPerPodReplicas(statusReplicas int32, target int64, name string, tol tolerances, namespace string,
	metricSelector *metav1.LabelSelector) (int32, int64, time.Time, error) {
	usage, ts, err := c.externalSum(name, namespace, metricSelector)
	if err != nil {
		return 0, 0, time.Time{}, err
	}
	replicas := statusReplicas
	if !tol.within(float64(usage) / (float64(target) * float64(replicas))) {
		replicas = clampInt32(float64(usage) / float64(target))
	}
	if usage == math.MaxInt64 {
		return replicas, usage, ts, nil
	}
	return replicas, perReplica(usage, statusReplicas), ts, nil
}
