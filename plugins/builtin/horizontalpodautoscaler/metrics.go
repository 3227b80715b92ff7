package horizontalpodautoscaler

import (
	"context"
	"errors"
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metricsapi "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	resourceclient "k8s.io/metrics/pkg/client/clientset/versioned/typed/metrics/v1beta1"
	customclient "k8s.io/metrics/pkg/client/custom_metrics"
	externalclient "k8s.io/metrics/pkg/client/external_metrics"
)

// defaultMetricWindow is the window a custom metric without one is taken
// to cover (metrics-server's default).
const defaultMetricWindow = 30 * time.Second

// podMetric is one pod's sample of a metric, in milli-units.
type podMetric struct {
	timestamp time.Time
	window    time.Duration
	value     int64
}

// podMetrics holds samples by pod name.
type podMetrics map[string]podMetric

// metricsSource is what the replica calculator reads metrics from; the
// product's is apiMetrics, tests use the metrics APIs' fake clients.
type metricsSource interface {
	// resourceMetric is each pod's usage of resource (summed over its
	// containers, or of one container), with the samples' timestamp.
	resourceMetric(ctx context.Context, resource corev1.ResourceName, namespace string, selector labels.Selector, container string) (podMetrics, time.Time, error)
	// podsMetric is each selected pod's value of a custom metric.
	podsMetric(name, namespace string, selector, metricSelector labels.Selector) (podMetrics, time.Time, error)
	// objectMetric is an object's value of a custom metric.
	objectMetric(name, namespace string, ref *autoscalingv2.CrossVersionObjectReference, metricSelector labels.Selector) (int64, time.Time, error)
	// externalMetric is the values of an external metric.
	externalMetric(name, namespace string, selector labels.Selector) ([]int64, time.Time, error)
}

// apiMetrics reads metrics.k8s.io, custom.metrics.k8s.io and
// external.metrics.k8s.io, as kube-controller-manager's REST metrics client.
type apiMetrics struct {
	resource resourceclient.PodMetricsesGetter
	custom   customclient.CustomMetricsClient
	external externalclient.ExternalMetricsClient
}

var _ metricsSource = (*apiMetrics)(nil)

func (m *apiMetrics) resourceMetric(ctx context.Context, resource corev1.ResourceName, namespace string, selector labels.Selector, container string) (podMetrics, time.Time, error) {
	list, err := m.resource.PodMetricses(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("unable to fetch metrics from resource metrics API: %w", err)
	}
	if len(list.Items) == 0 {
		return nil, time.Time{}, errors.New("no metrics returned from resource metrics API")
	}
	res := make(podMetrics, len(list.Items))
	for _, pm := range list.Items {
		if v, ok := podUsage(pm, resource, container); ok {
			res[pm.Name] = podMetric{timestamp: pm.Timestamp.Time, window: pm.Window.Duration, value: v}
		}
	}
	return res, list.Items[0].Timestamp.Time, nil
}

// podUsage sums a pod's usage of resource over its containers, or reads
// one container's; a pod with a container missing the resource (or
// without the named container, or without containers) has no sample.
func podUsage(pm metricsapi.PodMetrics, resource corev1.ResourceName, container string) (int64, bool) {
	if container != "" {
		for _, c := range pm.Containers {
			if c.Name == container {
				q, ok := c.Usage[resource]
				return q.MilliValue(), ok
			}
		}
		return 0, false
	}
	if len(pm.Containers) == 0 {
		return 0, false
	}
	var sum int64
	for _, c := range pm.Containers {
		q, ok := c.Usage[resource]
		if !ok {
			return 0, false
		}
		sum += q.MilliValue()
	}
	return sum, true
}

func (m *apiMetrics) podsMetric(name, namespace string, selector, metricSelector labels.Selector) (podMetrics, time.Time, error) {
	list, err := m.custom.NamespacedMetrics(namespace).GetForObjects(schema.GroupKind{Kind: "Pod"}, selector, name, metricSelector)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("unable to fetch metrics from custom metrics API: %w", err)
	}
	if len(list.Items) == 0 {
		return nil, time.Time{}, errors.New("no metrics returned from custom metrics API")
	}
	res := make(podMetrics, len(list.Items))
	for _, v := range list.Items {
		window := defaultMetricWindow
		if v.WindowSeconds != nil {
			window = time.Duration(*v.WindowSeconds) * time.Second
		}
		res[v.DescribedObject.Name] = podMetric{timestamp: v.Timestamp.Time, window: window, value: v.Value.MilliValue()}
	}
	return res, list.Items[0].Timestamp.Time, nil
}

func (m *apiMetrics) objectMetric(name, namespace string, ref *autoscalingv2.CrossVersionObjectReference, metricSelector labels.Selector) (int64, time.Time, error) {
	gk := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind).GroupKind()
	var get func() (int64, time.Time, error)
	if gk.Kind == "Namespace" && gk.Group == "" {
		// A namespace's metric is read at the root, named by the HPA's
		// namespace (the reference's name is not used), as upstream.
		get = func() (int64, time.Time, error) {
			v, err := m.custom.RootScopedMetrics().GetForObject(gk, namespace, name, metricSelector)
			if err != nil {
				return 0, time.Time{}, err
			}
			return v.Value.MilliValue(), v.Timestamp.Time, nil
		}
	} else {
		get = func() (int64, time.Time, error) {
			v, err := m.custom.NamespacedMetrics(namespace).GetForObject(gk, ref.Name, name, metricSelector)
			if err != nil {
				return 0, time.Time{}, err
			}
			return v.Value.MilliValue(), v.Timestamp.Time, nil
		}
	}
	v, ts, err := get()
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("unable to fetch metrics from custom metrics API: %w", err)
	}
	return v, ts, nil
}

func (m *apiMetrics) externalMetric(name, namespace string, selector labels.Selector) ([]int64, time.Time, error) {
	list, err := m.external.NamespacedMetrics(namespace).List(name, selector)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("unable to fetch metrics from external metrics API: %w", err)
	}
	if len(list.Items) == 0 {
		return nil, time.Time{}, errors.New("no metrics returned from external metrics API")
	}
	res := make([]int64, 0, len(list.Items))
	for _, v := range list.Items {
		res = append(res, v.Value.MilliValue())
	}
	return res, list.Items[0].Timestamp.Time, nil
}
