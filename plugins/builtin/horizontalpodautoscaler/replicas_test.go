package horizontalpodautoscaler

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	core "k8s.io/client-go/testing"
	metricsapi "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsfake "k8s.io/metrics/pkg/client/clientset/versioned/fake"
)

// both gives each pod's two containers the same usage.
func both(levels ...int64) [][]int64 {
	out := make([][]int64, len(levels))
	for i, l := range levels {
		out[i] = []int64{l, l}
	}
	return out
}

// pods builds n running, ready, long-started pods requesting 1 CPU per
// container, then lets edit change them.
func pods(n int, edit func(i int, p *podSpec)) []podSpec {
	out := make([]podSpec, n)
	for i := range out {
		out[i].cpuMillis = 1000
		if edit != nil {
			edit(i, &out[i])
		}
	}
	return out
}

func readiness(s ...corev1.ConditionStatus) func(int, *podSpec) {
	return func(i int, p *podSpec) { p.ready = s[i] }
}

func phases(s ...corev1.PodPhase) func(int, *podSpec) {
	return func(i int, p *podSpec) { p.phase = s[i] }
}

func starts(s ...time.Time) func(int, *podSpec) {
	return func(i int, p *podSpec) { p.start = s[i] }
}

func edits(fs ...func(int, *podSpec)) func(int, *podSpec) {
	return func(i int, p *podSpec) {
		for _, f := range fs {
			f(i, p)
		}
	}
}

const (
	T = corev1.ConditionTrue
	F = corev1.ConditionFalse
	R = corev1.PodRunning
	P = corev1.PodPending
	X = corev1.PodFailed
)

// TestResourceUtilizationReplicas is upstream's table of replica
// calculations for CPU utilization targets (the numbers of
// replica_calculator_test.go's resource cases), run against the
// metrics.k8s.io fake client. Samples are taken at the epoch, so a pod
// still in its CPU initialization period has no fresh sample.
func TestResourceUtilizationReplicas(t *testing.T) {
	cases := []struct {
		name      string
		current   int32
		pods      []podSpec
		levels    [][]int64
		container string
		target    int32
		want      int32
		wantUtil  int32
		wantRaw   int64
		wantErr   string
	}{
		{name: "scale up", current: 3, pods: pods(3, nil), levels: both(300, 500, 700), target: 30, want: 5, wantUtil: 50, wantRaw: 1000},
		{name: "scale up container", current: 3, pods: pods(3, nil), levels: [][]int64{{1000, 300}, {1000, 500}, {1000, 700}}, container: "container2", target: 30, want: 5, wantUtil: 50, wantRaw: 500},
		{name: "scale up unready less scale", current: 3, pods: pods(3, readiness(F, T, T)), levels: both(300, 500, 700), target: 30, want: 4, wantUtil: 60, wantRaw: 1200},
		{name: "scale up hot CPU less scale", current: 3, pods: pods(3, starts(hot, cool, cool)), levels: both(300, 500, 700), target: 30, want: 4, wantUtil: 60, wantRaw: 1200},
		{name: "scale up hot CPU less scale container", current: 3, pods: pods(3, starts(hot, cool, cool)), levels: [][]int64{{0, 300}, {0, 500}, {0, 700}}, container: "container2", target: 30, want: 4, wantUtil: 60, wantRaw: 600},
		{name: "no scale up: unready pods", current: 3, pods: pods(3, readiness(T, F, F)), levels: both(400, 500, 700), target: 30, want: 3, wantUtil: 40, wantRaw: 800},
		{name: "no scale up: hot CPU unready pods", current: 3, pods: pods(3, edits(readiness(T, F, F), starts(cool, hot, hot))), levels: both(400, 500, 700), target: 30, want: 3, wantUtil: 40, wantRaw: 800},
		{name: "scale up ignores failed pods", current: 2, pods: pods(4, edits(readiness(T, T, F, F), phases(R, R, X, X))), levels: both(500, 700), target: 30, want: 4, wantUtil: 60, wantRaw: 1200},
		{name: "scale up ignores deleted pods", current: 2, pods: pods(4, edits(readiness(T, T, F, F), func(i int, p *podSpec) { p.deleted = i >= 2 })), levels: both(500, 700), target: 30, want: 4, wantUtil: 60, wantRaw: 1200},
		{name: "scale down", current: 5, pods: pods(5, nil), levels: both(100, 300, 500, 250, 250), target: 50, want: 3, wantUtil: 28, wantRaw: 560},
		{name: "scale down container", current: 5, pods: pods(5, nil), levels: [][]int64{{1000, 100}, {1000, 300}, {1000, 500}, {1000, 250}, {1000, 250}}, container: "container2", target: 50, want: 3, wantUtil: 28, wantRaw: 280},
		{name: "scale down excludes unready pods", current: 5, pods: pods(5, readiness(T, T, T, F, F)), levels: both(100, 300, 500, 250, 250), target: 50, want: 2, wantUtil: 30, wantRaw: 600},
		{name: "scale down ignores pending pods", current: 5, pods: pods(5, edits(readiness(T, F, F, F, F), phases(R, P, P, P, P))), levels: both(100), target: 50, want: 1, wantUtil: 10, wantRaw: 200},
		{name: "scale down excludes hot CPU pods", current: 5, pods: pods(5, starts(cool, cool, cool, hot, hot)), levels: both(100, 300, 500, 250, 250), target: 50, want: 2, wantUtil: 30, wantRaw: 600},
		{name: "scale down ignores failed pods", current: 5, pods: pods(7, edits(readiness(T, T, T, T, T, F, F), phases(R, R, R, R, R, X, X))), levels: both(100, 300, 500, 250, 250), target: 50, want: 3, wantUtil: 28, wantRaw: 560},
		{name: "within tolerance", current: 3, pods: pods(3, func(i int, p *podSpec) { p.cpuMillis = []int64{900, 1000, 1100}[i] }), levels: both(1010, 1030, 1020), target: 100, want: 3, wantUtil: 102, wantRaw: 2040},
		{name: "superfluous metrics counted", current: 4, pods: pods(4, nil), levels: both(4000, 9500, 3000, 7000, 3200, 2000), target: 100, want: 24, wantUtil: 587, wantRaw: 11750},
		{name: "some pods missing metrics scales down", current: 4, pods: pods(4, nil), levels: both(400, 95), target: 100, want: 3, wantUtil: 24, wantRaw: 495},
		{name: "no change: metric equal to target", current: 2, pods: pods(2, nil), levels: both(1000), target: 100, want: 2, wantUtil: 100, wantRaw: 2000},
		{name: "no change: metric above target", current: 2, pods: pods(2, nil), levels: both(1900), target: 100, want: 2, wantUtil: 190, wantRaw: 3800},
		{name: "no change: metric below target", current: 2, pods: pods(2, nil), levels: both(600), target: 100, want: 2, wantUtil: 60, wantRaw: 1200},
		{name: "no change: unready pod metric missing", current: 3, pods: pods(3, readiness(F, T, T)), levels: both(100, 450), target: 50, want: 3, wantUtil: 45, wantRaw: 900},
		{name: "no change: hot CPU pod metric missing", current: 3, pods: pods(3, starts(hot, cool, cool)), levels: both(100, 450), target: 50, want: 3, wantUtil: 45, wantRaw: 900},
		{name: "scale up: unready pod metric missing", current: 3, pods: pods(3, readiness(F, T, T)), levels: both(100, 2000), target: 50, want: 4, wantUtil: 200, wantRaw: 4000},
		{name: "scale up: hot CPU pod metric missing", current: 3, pods: pods(3, edits(readiness(F, T, T), starts(hot, cool, cool))), levels: both(100, 2000), target: 50, want: 4, wantUtil: 200, wantRaw: 4000},
		{name: "scale down: unready pod metric missing", current: 4, pods: pods(4, readiness(F, T, T, T)), levels: both(100, 100, 100), target: 50, want: 3, wantUtil: 10, wantRaw: 200},
		{name: "scale down: target over 100", current: 4, pods: pods(4, edits(readiness(F, T, T, T), func(i int, p *podSpec) { p.cpuMillis = []int64{1000, 1000, 2000, 2000}[i] })), levels: both(200, 100, 100), target: 300, want: 2, wantUtil: 6, wantRaw: 200},
		{name: "rolling update with maxSurge: extra pod missing metric", current: 2, pods: pods(3, nil), levels: both(100, 100), target: 50, want: 2, wantUtil: 10, wantRaw: 200},
		{name: "no metrics returned", current: 4, pods: pods(3, nil), levels: nil, target: 100, wantErr: "unable to get metrics for resource cpu: no metrics returned from resource metrics API"},
		{name: "missing CPU request", current: 1, pods: pods(1, func(_ int, p *podSpec) { p.cpuMillis = 0 }), levels: both(200), target: 100, wantErr: "missing request for cpu in container container1 of Pod web-0"},
		{name: "container not in pod", current: 1, pods: pods(1, nil), levels: both(200), container: "sidecar", target: 100, wantErr: "did not receive metrics for targeted pods"},
		{name: "all pods pending", current: 2, pods: pods(2, phases(P, P)), levels: both(200, 200), target: 50, wantErr: "did not receive metrics for targeted pods (pods might be unready)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ps []*corev1.Pod
			for i, s := range tc.pods {
				ps = append(ps, buildPod(i, s))
			}
			m := emptyMetrics()
			m.resource = resourceMetricsClient(tc.levels, time.Time{}).MetricsV1beta1()
			calc := newCalc(t, ps, m)
			got, err := calc.resourceUtilizationReplicas(context.Background(), tc.current, tc.target, corev1.ResourceCPU, tolerances{0.1, 0.1}, testNS, testSelector, tc.container)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v; want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.replicas != tc.want || got.percent != tc.wantUtil || got.raw != tc.wantRaw {
				t.Errorf("replicas, utilization, raw = %d, %d%%, %dm; want %d, %d%%, %dm", got.replicas, got.percent, got.raw, tc.want, tc.wantUtil, tc.wantRaw)
			}
		})
	}
}

// TestDisjointPodAndMetricNames: samples of pods that are not selected
// are not counted (upstream's "disjoint pod and metric names").
func TestDisjointPodAndMetricNames(t *testing.T) {
	c := &metricsfake.Clientset{}
	c.AddReactor("list", "pods", func(core.Action) (bool, runtime.Object, error) {
		return true, &metricsapi.PodMetricsList{Items: []metricsapi.PodMetrics{{ObjectMeta: metav1.ObjectMeta{Name: "an-older-pod-name", Namespace: testNS, Labels: map[string]string{"name": "web"}},
			Containers: []metricsapi.ContainerMetrics{{Name: "container1", Usage: corev1.ResourceList{corev1.ResourceCPU: *resourceMilli(100)}}}}}}, nil
	})
	m := emptyMetrics()
	m.resource = c.MetricsV1beta1()
	calc := newCalc(t, []*corev1.Pod{buildPod(0, podSpec{cpuMillis: 1000})}, m)
	_, err := calc.resourceUtilizationReplicas(context.Background(), 1, 100, corev1.ResourceCPU, tolerances{0.1, 0.1}, testNS, testSelector, "")
	if err == nil || err.Error() != "no metrics returned matched known pods" {
		t.Fatalf("error = %v; want no metrics returned matched known pods", err)
	}
}

// TestCPUReadiness is upstream's table of which pods' CPU samples count,
// by readiness, start time and the sample's freshness.
func TestCPUReadiness(t *testing.T) {
	minute := time.Minute
	cases := []struct {
		name        string
		start       time.Time
		ready       corev1.ConditionStatus
		transition  time.Time
		sample      time.Time
		noCondition bool
		unready     bool
	}{
		{name: "no ready condition", noCondition: true, start: testNow.Add(-10 * minute), sample: testNow, unready: true},
		{name: "ready with fresh sample during initialization", start: testNow.Add(-minute), ready: T, transition: testNow.Add(-minute).Add(30 * time.Second), sample: testNow, unready: false},
		{name: "ready without fresh sample during initialization", start: testNow.Add(-minute), ready: T, transition: testNow.Add(-20 * time.Second), sample: testNow, unready: true},
		{name: "unready during initialization", start: testNow.Add(-minute), ready: F, transition: testNow.Add(-minute), sample: testNow, unready: true},
		{name: "ready without fresh sample after initialization", start: testNow.Add(-3 * minute), ready: T, transition: testNow.Add(-10 * time.Second), sample: testNow, unready: false},
		{name: "unready that was ready after initialization", start: testNow.Add(-3 * minute), ready: F, transition: testNow.Add(-minute), sample: testNow, unready: false},
		{name: "never ready after initialization", start: testNow.Add(-3 * minute), ready: F, transition: testNow.Add(-3 * minute).Add(5 * time.Second), sample: testNow, unready: true},
	}
	calc := newCalc(t, nil, emptyMetrics())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := buildPod(0, podSpec{start: tc.start, ready: tc.ready})
			p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(tc.transition)
			if tc.noCondition {
				p.Status.Conditions = nil
			}
			g := calc.group([]*corev1.Pod{p}, podMetrics{"web-0": {timestamp: tc.sample, window: 30 * time.Second, value: 1}}, corev1.ResourceCPU)
			if got := g.unready.Has("web-0"); got != tc.unready {
				t.Errorf("unready = %v; want %v", got, tc.unready)
			}
			// Memory samples are never discounted for readiness.
			if g := calc.group([]*corev1.Pod{p}, podMetrics{"web-0": {}}, corev1.ResourceMemory); g.ready != 1 {
				t.Errorf("memory: ready = %d; want 1", g.ready)
			}
		})
	}
}

func TestTolerances(t *testing.T) {
	tol := tolerances{0.1, 0.2}
	if got := fmt.Sprint(tol, tol.within(1.15), tol.within(0.85), tol.within(0.9), tol.within(1.21)); got != "[down:10.0%, up:20.0%] true false true false" {
		t.Errorf("got %s", got)
	}
}
