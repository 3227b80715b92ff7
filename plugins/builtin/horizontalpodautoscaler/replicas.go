package horizontalpodautoscaler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
	corelisters "k8s.io/client-go/listers/core/v1"
	resourcehelpers "k8s.io/component-helpers/resource"
	"k8s.io/utils/clock"
)

// tolerances is how far below and above 1 a usage ratio may be without a
// change of scale.
type tolerances struct{ down, up float64 }

func (t tolerances) within(ratio float64) bool {
	return 1-t.down <= ratio && ratio <= 1+t.up
}

func (t tolerances) String() string {
	return fmt.Sprintf("[down:%.1f%%, up:%.1f%%]", t.down*100, t.up*100)
}

// calculator turns metric samples and the pods they belong to into a
// replica count, as upstream's replica calculator: pods not ready (or
// still in their CPU initialization) and pods without a sample are
// counted in the direction that damps the change.
type calculator struct {
	metrics metricsSource
	pods    corelisters.PodLister
	clock   clock.PassiveClock
	// cpuInit and readinessDelay decide which pods' CPU samples are noise.
	cpuInit, readinessDelay time.Duration
}

var errNoPods = errors.New("no pods returned by selector while calculating replica count")

// podGroups sorts the selected pods: ready ones with a sample counted,
// unready ones (pending, or CPU not yet representative), pods without a
// sample, and pods ignored (deleted or failed).
type podGroups struct {
	ready                     int
	unready, missing, ignored sets.Set[string]
}

func (c *calculator) group(pods []*corev1.Pod, metrics podMetrics, resource corev1.ResourceName) podGroups {
	g := podGroups{unready: sets.New[string](), missing: sets.New[string](), ignored: sets.New[string]()}
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodFailed {
			g.ignored.Insert(pod.Name)
			continue
		}
		if pod.Status.Phase == corev1.PodPending {
			g.unready.Insert(pod.Name)
			continue
		}
		m, found := metrics[pod.Name]
		if !found {
			g.missing.Insert(pod.Name)
			continue
		}
		if resource == corev1.ResourceCPU && c.cpuUnready(pod, m) {
			g.unready.Insert(pod.Name)
			continue
		}
		g.ready++
	}
	return g
}

// cpuUnready: within the CPU initialization period a pod counts only once
// ready with a sample taken wholly after it became ready; after it, a pod
// not ready counts unless it went unready after its initial readiness delay.
func (c *calculator) cpuUnready(pod *corev1.Pod, m podMetric) bool {
	ready := readyCondition(pod)
	if ready == nil || pod.Status.StartTime == nil {
		return true
	}
	start := pod.Status.StartTime.Time
	if start.Add(c.cpuInit).After(c.clock.Now()) {
		return ready.Status == corev1.ConditionFalse || m.timestamp.Before(ready.LastTransitionTime.Add(m.window))
	}
	return ready.Status == corev1.ConditionFalse && start.Add(c.readinessDelay).After(ready.LastTransitionTime.Time)
}

func readyCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodReady {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// drop removes the samples of the named pods.
func (m podMetrics) drop(pods sets.Set[string]) {
	for name := range pods {
		delete(m, name)
	}
}

// listPods lists the pods selector selects; none is an error.
func (c *calculator) listPods(namespace string, selector labels.Selector) ([]*corev1.Pod, error) {
	pods, err := c.pods.Pods(namespace).List(selector)
	if err != nil {
		return nil, fmt.Errorf("unable to get pods while calculating replica count: %w", err)
	}
	if len(pods) == 0 {
		return nil, errNoPods
	}
	return pods, nil
}

// podRequests is each pod's request of resource in milli-units: the
// pod-level request when the pod sets one (and no container is named),
// else the sum over its containers and sidecars (or the named container's).
func podRequests(pods []*corev1.Pod, container string, resource corev1.ResourceName) (map[string]int64, error) {
	requests := make(map[string]int64, len(pods))
	for _, pod := range pods {
		if container == "" && resourcehelpers.IsPodLevelRequestsSet(pod) {
			q, ok := resourcehelpers.PodRequests(pod, resourcehelpers.PodResourcesOptions{})[resource]
			if !ok {
				return nil, fmt.Errorf("missing pod-level request for %s in Pod %s", resource, pod.Name)
			}
			requests[pod.Name] = q.MilliValue()
			continue
		}
		r, err := containerRequests(pod, container, resource)
		if err != nil {
			return nil, err
		}
		requests[pod.Name] = r
	}
	return requests, nil
}

func containerRequests(pod *corev1.Pod, container string, resource corev1.ResourceName) (int64, error) {
	containers := append([]corev1.Container{}, pod.Spec.Containers...)
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			containers = append(containers, c)
		}
	}
	var sum int64
	for _, c := range containers {
		if container != "" && container != c.Name {
			continue
		}
		q, ok := c.Resources.Requests[resource]
		if !ok {
			return 0, fmt.Errorf("missing request for %s in container %s of Pod %s", resource, c.Name, pod.Name)
		}
		if container != "" {
			return q.MilliValue(), nil
		}
		sum += q.MilliValue()
	}
	if container != "" {
		return 0, fmt.Errorf("container %s not found in Pod %s", container, pod.Name)
	}
	return sum, nil
}

// proposal is the replica count for usageRatio over g's pods. With pods
// unready or missing, their samples are filled in the direction that
// damps the change (missing pods: fill when below target, zero above;
// unready pods: zero when scaling up) and the ratio recomputed; a change
// the filling reverses or shrinks into tolerance is no change.
func proposal(current int32, g podGroups, metrics podMetrics, usageRatio float64, tol tolerances,
	ratio func(podMetrics) (float64, error), fillBelow func(pod string) int64) (int32, error) {
	scaleUpWithUnready := len(g.unready) > 0 && usageRatio > 1
	if !scaleUpWithUnready && len(g.missing) == 0 {
		if tol.within(usageRatio) {
			return current, nil
		}
		return int32(math.Ceil(usageRatio * float64(g.ready))), nil
	}
	for name := range g.missing {
		switch {
		case usageRatio < 1:
			metrics[name] = podMetric{value: fillBelow(name)}
		case usageRatio > 1:
			metrics[name] = podMetric{value: 0}
		}
	}
	if scaleUpWithUnready {
		for name := range g.unready {
			metrics[name] = podMetric{value: 0}
		}
	}
	newRatio, err := ratio(metrics)
	if err != nil {
		return 0, err
	}
	if tol.within(newRatio) || (usageRatio < 1 && newRatio > 1) || (usageRatio > 1 && newRatio < 1) {
		return current, nil
	}
	replicas := int32(math.Ceil(newRatio * float64(len(metrics))))
	if (newRatio < 1 && replicas > current) || (newRatio > 1 && replicas < current) {
		return current, nil
	}
	return replicas, nil
}

// utilization is the resource utilization of the sampled pods as a
// percentage of their requests, its ratio to target, and the average raw
// usage.
func utilization(metrics podMetrics, requests map[string]int64, target int32) (ratio float64, percent int32, raw int64, err error) {
	var used, requested int64
	n := 0
	for name, m := range metrics {
		r, ok := requests[name]
		if !ok {
			continue
		}
		used += m.value
		requested += r
		n++
	}
	if requested == 0 {
		return 0, 0, 0, errors.New("no metrics returned matched known pods")
	}
	percent = int32(used * 100 / requested)
	return float64(percent) / float64(target), percent, used / int64(n), nil
}

// averageUsage is the average of the samples and its ratio to target.
func averageUsage(metrics podMetrics, target int64) (float64, int64) {
	var total int64
	for _, m := range metrics {
		total += m.value
	}
	avg := total / int64(len(metrics))
	return float64(avg) / float64(target), avg
}

// resourceResult is what a resource metric yields: the proposal, the
// utilization in percent (utilization targets only), the average raw
// usage, and the samples' timestamp.
type resourceResult struct {
	replicas  int32
	percent   int32
	raw       int64
	timestamp time.Time
}

// resourceUtilizationReplicas proposes a count for a utilization target.
func (c *calculator) resourceUtilizationReplicas(ctx context.Context, current, target int32, resource corev1.ResourceName,
	tol tolerances, namespace string, selector labels.Selector, container string) (resourceResult, error) {
	metrics, ts, err := c.metrics.resourceMetric(ctx, resource, namespace, selector, container)
	if err != nil {
		return resourceResult{}, fmt.Errorf("unable to get metrics for resource %s: %w", resource, err)
	}
	pods, err := c.listPods(namespace, selector)
	if err != nil {
		return resourceResult{}, err
	}
	g := c.group(pods, metrics, resource)
	metrics.drop(g.ignored)
	metrics.drop(g.unready)
	if len(metrics) == 0 {
		return resourceResult{}, errors.New("did not receive metrics for targeted pods (pods might be unready)")
	}
	requests, err := podRequests(pods, container, resource)
	if err != nil {
		return resourceResult{}, err
	}
	ratio, percent, raw, err := utilization(metrics, requests, target)
	if err != nil {
		return resourceResult{}, err
	}
	fallback := int64(max(100, target))
	replicas, err := proposal(current, g, metrics, ratio, tol,
		func(m podMetrics) (float64, error) { r, _, _, err := utilization(m, requests, target); return r, err },
		func(pod string) int64 { return requests[pod] * fallback / 100 })
	if err != nil {
		return resourceResult{percent: percent, raw: raw}, err
	}
	return resourceResult{replicas: replicas, percent: percent, raw: raw, timestamp: ts}, nil
}

// plainReplicas proposes a count for an average value target over pod
// samples (a resource's AverageValue, or a Pods metric).
func (c *calculator) plainReplicas(metrics podMetrics, current int32, target int64, tol tolerances,
	namespace string, selector labels.Selector, resource corev1.ResourceName) (int32, int64, error) {
	pods, err := c.listPods(namespace, selector)
	if err != nil {
		return 0, 0, err
	}
	g := c.group(pods, metrics, resource)
	metrics.drop(g.ignored)
	metrics.drop(g.unready)
	if len(metrics) == 0 {
		return 0, 0, errors.New("did not receive metrics for targeted pods (pods might be unready)")
	}
	ratio, usage := averageUsage(metrics, target)
	replicas, err := proposal(current, g, metrics, ratio, tol,
		func(m podMetrics) (float64, error) { r, _ := averageUsage(m, target); return r, nil },
		func(string) int64 { return target })
	return replicas, usage, err
}

// rawResourceReplicas proposes a count for a resource AverageValue target.
func (c *calculator) rawResourceReplicas(ctx context.Context, current int32, target int64, resource corev1.ResourceName,
	tol tolerances, namespace string, selector labels.Selector, container string) (int32, int64, time.Time, error) {
	metrics, ts, err := c.metrics.resourceMetric(ctx, resource, namespace, selector, container)
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("unable to get metrics for resource %s: %w", resource, err)
	}
	replicas, usage, err := c.plainReplicas(metrics, current, target, tol, namespace, selector, resource)
	return replicas, usage, ts, err
}

// podsMetricReplicas proposes a count for a Pods metric's AverageValue.
func (c *calculator) podsMetricReplicas(current int32, target int64, name string, tol tolerances,
	namespace string, selector, metricSelector labels.Selector) (int32, int64, time.Time, error) {
	metrics, ts, err := c.metrics.podsMetric(name, namespace, selector, metricSelector)
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("unable to get metric %s: %w", name, err)
	}
	replicas, usage, err := c.plainReplicas(metrics, current, target, tol, namespace, selector, "")
	return replicas, usage, ts, err
}
