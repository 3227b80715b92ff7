package horizontalpodautoscaler

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	core "k8s.io/client-go/testing"
	cmapi "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emapi "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	cmfake "k8s.io/metrics/pkg/client/custom_metrics/fake"
	emfake "k8s.io/metrics/pkg/client/external_metrics/fake"
)

var deploymentRef = autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}

// customMetrics is the custom.metrics.k8s.io fake: pod values by index
// for a pods query, one value for an object's; it records what was asked.
func customMetrics(t *testing.T, metric string, values ...int64) *cmfake.FakeCustomMetricsClient {
	c := &cmfake.FakeCustomMetricsClient{}
	c.AddReactor("get", "*", func(a core.Action) (bool, runtime.Object, error) {
		get := a.(cmfake.GetForAction)
		if get.GetMetricName() != metric {
			return true, nil, fmt.Errorf("asked for metric %q; want %q", get.GetMetricName(), metric)
		}
		list := &cmapi.MetricValueList{}
		if get.GetName() != "*" {
			list.Items = append(list.Items, cmapi.MetricValue{DescribedObject: corev1.ObjectReference{Kind: "Deployment", Name: get.GetName()},
				Metric: cmapi.MetricIdentifier{Name: metric}, Value: *resourceMilli(values[0])})
			return true, list, nil
		}
		if want := "name=web"; get.GetLabelSelector().String() != want {
			t.Errorf("pods selected by %q; want %q", get.GetLabelSelector(), want)
		}
		for i, v := range values {
			list.Items = append(list.Items, cmapi.MetricValue{DescribedObject: corev1.ObjectReference{Kind: "Pod", Name: podName(i)},
				Metric: cmapi.MetricIdentifier{Name: metric}, Value: *resourceMilli(v)})
		}
		return true, list, nil
	})
	return c
}

func externalMetrics(metric string, values ...int64) *emfake.FakeExternalMetricsClient {
	c := &emfake.FakeExternalMetricsClient{}
	c.AddReactor("list", "*", func(a core.Action) (bool, runtime.Object, error) {
		if a.GetResource().Resource != metric {
			return true, nil, fmt.Errorf("asked for metric %q; want %q", a.GetResource().Resource, metric)
		}
		list := &emapi.ExternalMetricValueList{}
		for _, v := range values {
			list.Items = append(list.Items, emapi.ExternalMetricValue{MetricName: metric, Value: *resourceMilli(v)})
		}
		return true, list, nil
	})
	return c
}

func specsToPods(specs []podSpec) []*corev1.Pod {
	var out []*corev1.Pod
	for i, s := range specs {
		out = append(out, buildPod(i, s))
	}
	return out
}

// TestPodsMetricReplicas is upstream's table for Pods metrics (average
// value per pod): readiness does not matter outside CPU; missing pods
// count at the target when scaling down.
func TestPodsMetricReplicas(t *testing.T) {
	cases := []struct {
		name      string
		current   int32
		pods      []podSpec
		levels    []int64
		target    int64
		want      int32
		wantUsage int64
		wantErr   string
	}{
		{name: "scale up", current: 3, pods: pods(3, nil), levels: []int64{20000, 10000, 30000}, target: 15000, want: 4, wantUsage: 20000},
		{name: "scale up ignores readiness and start", current: 3, pods: pods(3, edits(readiness(T, T, F), starts(cool, cool, hot))), levels: []int64{50000, 10000, 30000}, target: 15000, want: 6, wantUsage: 30000},
		{name: "scale up unready hot", current: 3, pods: pods(3, edits(readiness(F, T, F), starts(hot, cool, hot))), levels: []int64{50000, 15000, 30000}, target: 15000, want: 7, wantUsage: 31666},
		{name: "scale down", current: 5, pods: pods(5, nil), levels: []int64{6000, 10000, 20000, 12000, 12000}, target: 20000, want: 3, wantUsage: 12000},
		{name: "within tolerance", current: 3, pods: pods(3, nil), levels: []int64{20000, 21000, 21000}, target: 20000, want: 3, wantUsage: 20666},
		{name: "missing pod counts at target when scaling down", current: 3, pods: pods(3, nil), levels: []int64{10000, 10000}, target: 20000, want: 2, wantUsage: 10000},
		{name: "missing pod counts as zero when scaling up", current: 3, pods: pods(3, nil), levels: []int64{40000, 40000}, target: 20000, want: 4, wantUsage: 40000},
		{name: "pending pod counts as zero when scaling up", current: 3, pods: pods(3, phases(R, R, P)), levels: []int64{40000, 40000, 40000}, target: 20000, want: 4, wantUsage: 40000},
		{name: "no values", current: 3, pods: pods(3, nil), levels: nil, target: 20000, wantErr: "unable to get metric qps: no metrics returned from custom metrics API"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := emptyMetrics()
			m.custom = customMetrics(t, "qps", tc.levels...)
			calc := newCalc(t, specsToPods(tc.pods), m)
			got, usage, _, err := calc.podsMetricReplicas(tc.current, tc.target, "qps", tolerances{0.1, 0.1}, testNS, testSelector, nil)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v; want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want || usage != tc.wantUsage {
				t.Errorf("replicas, usage, err = %d, %d, %v; want %d, %d", got, usage, err, tc.want, tc.wantUsage)
			}
		})
	}
}

// TestObjectAndExternalReplicas is upstream's table for Object and
// External metrics, Value targets (ratio times ready pods) and
// AverageValue targets (the value divided by the target).
func TestObjectAndExternalReplicas(t *testing.T) {
	cases := []struct {
		name      string
		kind      string // object, objectPerPod, external, externalPerPod
		current   int32
		pods      []podSpec
		level     int64
		target    int64
		want      int32
		wantUsage int64
	}{
		{name: "object scale up", kind: "object", current: 3, pods: pods(3, nil), level: 20000, target: 15000, want: 4, wantUsage: 20000},
		{name: "object scale up counts ready pods", kind: "object", current: 3, pods: pods(3, readiness(F, T, F)), level: 50000, target: 10000, want: 5, wantUsage: 50000},
		{name: "object scale down", kind: "object", current: 5, pods: pods(5, nil), level: 12000, target: 20000, want: 3, wantUsage: 12000},
		{name: "object within tolerance", kind: "object", current: 3, pods: pods(3, nil), level: 20666, target: 20000, want: 3, wantUsage: 20666},
		{name: "object from zero replicas", kind: "object", current: 0, level: 25000, target: 10000, want: 3, wantUsage: 25000},
		{name: "object per pod scale up", kind: "objectPerPod", current: 3, level: 20000, target: 5000, want: 4, wantUsage: 6667},
		{name: "object per pod scale down", kind: "objectPerPod", current: 5, level: 6000, target: 2000, want: 3, wantUsage: 1200},
		{name: "object per pod within tolerance", kind: "objectPerPod", current: 4, level: 20168, target: 5000, want: 4, wantUsage: 5042},
		{name: "external scale up counts ready pods", kind: "external", current: 3, pods: pods(3, readiness(F, T, F)), level: 8600, target: 4400, want: 2, wantUsage: 8600},
		{name: "external scale down", kind: "external", current: 5, pods: pods(5, nil), level: 8600, target: 4400 * 3, want: 4, wantUsage: 8600},
		{name: "external per pod scale up", kind: "externalPerPod", current: 3, level: 8600, target: 2150, want: 4, wantUsage: 2867},
		{name: "external per pod scale down", kind: "externalPerPod", current: 5, level: 8600, target: 3000, want: 3, wantUsage: 1720},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := emptyMetrics()
			m.custom = customMetrics(t, "qps", tc.level)
			m.external = externalMetrics("qps", tc.level)
			calc := newCalc(t, specsToPods(tc.pods), m)
			tol, sel := tolerances{0.1, 0.1}, &metav1.LabelSelector{MatchLabels: map[string]string{"queue": "jobs"}}
			var got int32
			var usage int64
			var err error
			switch tc.kind {
			case "object":
				got, usage, _, err = calc.objectReplicas(tc.current, tc.target, "qps", tol, testNS, &deploymentRef, testSelector, nil)
			case "objectPerPod":
				got, usage, _, err = calc.objectPerPodReplicas(tc.current, tc.target, "qps", tol, testNS, &deploymentRef, nil)
			case "external":
				got, usage, _, err = calc.externalReplicas(tc.current, tc.target, "qps", tol, testNS, sel, testSelector)
			case "externalPerPod":
				got, usage, _, err = calc.externalPerPodReplicas(tc.current, tc.target, "qps", tol, testNS, sel)
			}
			if err != nil || got != tc.want || usage != tc.wantUsage {
				t.Errorf("replicas, usage, err = %d, %d, %v; want %d, %d", got, usage, err, tc.want, tc.wantUsage)
			}
		})
	}
}

// TestExternalSumSaturates: values summing past int64 saturate.
func TestExternalSumSaturates(t *testing.T) {
	m := emptyMetrics()
	m.external = externalMetrics("qps", 1<<62/1000, 1<<62/1000, 1<<62/1000)
	m.external.(*emfake.FakeExternalMetricsClient).PrependReactor("list", "*", func(core.Action) (bool, runtime.Object, error) {
		big := emapi.ExternalMetricValue{MetricName: "qps"}
		big.Value.SetMilli(1 << 62)
		return true, &emapi.ExternalMetricValueList{Items: []emapi.ExternalMetricValue{big, big, big}}, nil
	})
	calc := newCalc(t, nil, m)
	got, usage, _, err := calc.externalPerPodReplicas(1, 1, "qps", tolerances{0.1, 0.1}, testNS, nil)
	if err != nil || got != 1<<31-1 || usage != 1<<63-1 {
		t.Errorf("replicas, usage, err = %d, %d, %v; want MaxInt32, MaxInt64", got, usage, err)
	}
}

// TestMetricSourceErrors: failures name the metric and the API.
func TestMetricSourceErrors(t *testing.T) {
	m := emptyMetrics()
	cm := &cmfake.FakeCustomMetricsClient{}
	cm.AddReactor("get", "*", func(core.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New(`the server could not find the requested resource`)
	})
	m.custom = cm
	m.external = &emfake.FakeExternalMetricsClient{}
	m.external.(*emfake.FakeExternalMetricsClient).AddReactor("list", "*", func(core.Action) (bool, runtime.Object, error) {
		return true, &emapi.ExternalMetricValueList{}, nil
	})
	calc := newCalc(t, specsToPods(pods(1, nil)), m)
	_, _, _, err := calc.objectReplicas(1, 1000, "qps", tolerances{0.1, 0.1}, testNS, &deploymentRef, testSelector, nil)
	if want := "unable to get metric qps on Deployment test-ns/web: unable to fetch metrics from custom metrics API: the server could not find the requested resource"; err == nil || err.Error() != want {
		t.Errorf("object: %v; want %q", err, want)
	}
	_, _, _, err = calc.externalReplicas(1, 1000, "qps", tolerances{0.1, 0.1}, testNS, nil, testSelector)
	if err == nil || !strings.Contains(err.Error(), "no metrics returned from external metrics API") {
		t.Errorf("external: %v; want no metrics returned from external metrics API", err)
	}
}
