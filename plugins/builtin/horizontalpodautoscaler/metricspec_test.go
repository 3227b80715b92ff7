package horizontalpodautoscaler

import (
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

func podsQPS(avg int64) autoscalingv2.MetricSpec {
	return autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "qps"},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewMilliQuantity(avg, resource.DecimalSI)}}}
}

func externalQueue(value int64) autoscalingv2.MetricSpec {
	return autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "queue"},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: resource.NewMilliQuantity(value, resource.DecimalSI)}}}
}

// TestPartialMetrics: a metric that fails does not stop a scale-up the
// others propose (upstream's rule), but does stop a scale-down.
func TestPartialMetrics(t *testing.T) {
	withThree := func(hpa *autoscalingv2.HorizontalPodAutoscaler) {
		hpa.Spec.MaxReplicas = 10
		hpa.Spec.Metrics = append(hpa.Spec.Metrics, podsQPS(10000), externalQueue(1000))
	}
	h := newHarness(t, 2, cpuHPA(withThree))
	h.c.calc.metrics.(*apiMetrics).custom = customMetrics(t, "qps", 10000, 10000)
	h.usage = 150 // 150%: 6 replicas
	hpa := h.sync(t)
	if !equal(h.writes, []int32{4}) { // the default rate limit: max(2 x 2, 4)
		t.Fatalf("scale writes = %v; want [4]", h.writes)
	}
	events := h.drainEvents()
	if len(events) != 2 || !strings.HasPrefix(events[0], "Warning FailedGetExternalMetric failed to get external metric queue: unable to get external metric test-ns/queue/nil: no metrics returned from external metrics API") ||
		events[1] != "Normal SuccessfulRescale New size: 4; reason: cpu resource utilization (percentage of request) above target" {
		t.Errorf("events = %q", events)
	}
	wantCondition(t, hpa, autoscalingv2.ScalingActive, corev1.ConditionTrue, "ValidMetricFound", "")
	m := hpa.Status.CurrentMetrics
	if len(m) != 3 || m[0].Resource == nil || m[1].Pods == nil || m[1].Pods.Current.AverageValue.String() != "10" || m[2].Type != "" {
		t.Errorf("currentMetrics = %+v; want cpu, pods qps 10, and an empty entry for the failed metric", m)
	}

	h = newHarness(t, 2, cpuHPA(withThree))
	h.c.calc.metrics.(*apiMetrics).custom = customMetrics(t, "qps", 1000, 1000)
	h.usage = 5
	hpa = h.sync(t)
	if len(h.writes) != 0 {
		t.Fatalf("scale writes = %v with a failed metric and the rest below target; want none", h.writes)
	}
	wantCondition(t, hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "FailedGetExternalMetric", "")
	if ev := h.drainEvents(); len(ev) != 2 || !strings.HasPrefix(ev[1], "Warning FailedComputeMetricsReplicas invalid metrics (1 invalid out of 3), first error is: failed to get queue external metric value:") {
		t.Errorf("events = %q", ev)
	}
}

// TestMetricStatuses: each source's status and the name the rescale
// reason gives it.
func TestMetricStatuses(t *testing.T) {
	h := newHarness(t, 2, cpuHPA(nil))
	m := h.c.calc.metrics.(*apiMetrics)
	m.custom = customMetrics(t, "qps", 30000, 30000)
	m.external = externalMetrics("queue", 9000)
	h.usage = 250
	sel, err := h.c.parseSelector(cpuHPA(nil), "name=web")
	if err != nil {
		t.Fatal(err)
	}
	tgt := target{specReplicas: 2, statusReplicas: 2, selector: sel}
	cases := []struct {
		spec       autoscalingv2.MetricSpec
		wantName   string
		wantStatus string
		want       int32
	}{
		{spec: autoscalingv2.MetricSpec{Type: autoscalingv2.ContainerResourceMetricSourceType, ContainerResource: &autoscalingv2.ContainerResourceMetricSource{
			Name: corev1.ResourceCPU, Container: "container2", Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](50)}}},
			wantName: "cpu container resource utilization (percentage of request)", wantStatus: "container2 cpu 250% 250m", want: 10},
		{spec: autoscalingv2.MetricSpec{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewMilliQuantity(250, resource.DecimalSI)}}},
			wantName: "cpu resource", wantStatus: "cpu 500m", want: 4},
		{spec: podsQPS(10000), wantName: "pods metric qps", wantStatus: "qps 30", want: 6},
		{spec: externalQueue(3000), wantName: "external metric queue(nil)", wantStatus: "queue value 9", want: 6},
		{spec: autoscalingv2.MetricSpec{Type: autoscalingv2.ObjectMetricSourceType, Object: &autoscalingv2.ObjectMetricSource{
			DescribedObject: deploymentRef, Metric: autoscalingv2.MetricIdentifier{Name: "qps"},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: resource.NewQuantity(10, resource.DecimalSI)}}},
			wantName: "Deployment metric qps", wantStatus: "web qps value 30", want: 6},
	}
	for _, tc := range cases {
		p, merr := h.c.proposeFor(t.Context(), cpuHPA(nil), tc.spec, tgt)
		if merr != nil {
			t.Errorf("%s: %v", tc.wantName, merr)
			continue
		}
		if got := statusString(p.status); p.name != tc.wantName || got != tc.wantStatus || p.replicas != tc.want {
			t.Errorf("proposal = %q %q %d; want %q %q %d", p.name, got, p.replicas, tc.wantName, tc.wantStatus, tc.want)
		}
	}
}

func statusString(s autoscalingv2.MetricStatus) string {
	switch s.Type {
	case autoscalingv2.ContainerResourceMetricSourceType:
		c := s.ContainerResource
		return c.Container + " " + string(c.Name) + " " + itoa(*c.Current.AverageUtilization) + "% " + c.Current.AverageValue.String()
	case autoscalingv2.ResourceMetricSourceType:
		return string(s.Resource.Name) + " " + s.Resource.Current.AverageValue.String()
	case autoscalingv2.PodsMetricSourceType:
		return s.Pods.Metric.Name + " " + s.Pods.Current.AverageValue.String()
	case autoscalingv2.ExternalMetricSourceType:
		return s.External.Metric.Name + " value " + s.External.Current.Value.String()
	case autoscalingv2.ObjectMetricSourceType:
		return s.Object.DescribedObject.Name + " " + s.Object.Metric.Name + " value " + s.Object.Current.Value.String()
	}
	return "?"
}

func itoa(v int32) string { return resource.NewQuantity(int64(v), resource.DecimalSI).String() }
