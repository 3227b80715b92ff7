package horizontalpodautoscaler

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	scalefake "k8s.io/client-go/scale/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	metricsapi "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsfake "k8s.io/metrics/pkg/client/clientset/versioned/fake"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/builtin/internal/freshness"
)

// harness is a controller over fakes: the Deployment "web"'s scale, the
// pods web-N and their CPU usage.
type harness struct {
	c       *controller
	clock   *clocktesting.FakeClock
	client  *fake.Clientset
	events  *record.FakeRecorder
	scale   *autoscalingv1.Scale
	writes  []int32 // spec.replicas written to the scale
	usage   int64   // each container's CPU usage, milli-cores
	metrErr error
	hpas    cache.Indexer // the HPA informer's store
}

func newHarness(t *testing.T, replicas int32, hpa *autoscalingv2.HorizontalPodAutoscaler) *harness {
	t.Helper()
	h := &harness{clock: clocktesting.NewFakeClock(testNow), events: record.NewFakeRecorder(100),
		scale: &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: testNS},
			Spec: autoscalingv1.ScaleSpec{Replicas: replicas}, Status: autoscalingv1.ScaleStatus{Replicas: replicas, Selector: "name=web"}}}
	h.client = fake.NewClientset(hpa)
	scales := &scalefake.FakeScaleClient{}
	scales.AddReactor("get", "deployments", func(core.Action) (bool, runtime.Object, error) { return true, h.scale.DeepCopy(), nil })
	scales.AddReactor("update", "deployments", func(a core.Action) (bool, runtime.Object, error) {
		sc := a.(core.UpdateAction).GetObject().(*autoscalingv1.Scale)
		h.writes = append(h.writes, sc.Spec.Replicas)
		h.scale.Spec.Replicas = sc.Spec.Replicas
		return true, sc, nil
	})
	mapper := meta.NewDefaultRESTMapper([]schema.GroupVersion{{Group: "apps", Version: "v1"}})
	mapper.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, meta.RESTScopeNamespace)
	mc := &metricsfake.Clientset{}
	mc.AddReactor("list", "pods", func(core.Action) (bool, runtime.Object, error) { return true, h.podMetrics(), h.metrErr })
	m := emptyMetrics()
	m.resource = mc.MetricsV1beta1()
	f := informers.NewSharedInformerFactory(h.client, 0)
	c, err := newController(DefaultConfig(), h.client, f, &scaleTargets{mapper: mapper, scales: scales}, m, h.events, h.clock, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	h.setPods(t, replicas)
	h.hpas = f.Autoscaling().V2().HorizontalPodAutoscalers().Informer().GetIndexer()
	if err := h.hpas.Add(hpa); err != nil {
		t.Fatal(err)
	}
	return h
}

// setPods makes the pod cache hold n running pods requesting 100m per
// container, started long ago.
func (h *harness) setPods(t *testing.T, n int32) {
	var ps []*corev1.Pod
	for i := range int(n) {
		ps = append(ps, buildPod(i, podSpec{cpuMillis: 100, start: testNow.Add(-time.Hour)}))
	}
	h.c.pods = podLister(t, ps)
	h.c.calc.pods = h.c.pods
}

func (h *harness) podMetrics() *metricsapi.PodMetricsList {
	list := &metricsapi.PodMetricsList{}
	for i := range int(h.scale.Spec.Replicas) {
		pm := metricsapi.PodMetrics{ObjectMeta: metav1.ObjectMeta{Name: podName(i), Namespace: testNS, Labels: map[string]string{"name": "web"}},
			Timestamp: metav1.NewTime(h.clock.Now()), Window: metav1.Duration{Duration: 15 * time.Second}}
		for _, c := range []string{"container1", "container2"} {
			pm.Containers = append(pm.Containers, metricsapi.ContainerMetrics{Name: c, Usage: corev1.ResourceList{corev1.ResourceCPU: *resourceMilli(h.usage)}})
		}
		list.Items = append(list.Items, pm)
	}
	return list
}

func podName(i int) string { return buildPod(i, podSpec{}).Name }

// sync reconciles the HPA and returns its stored status.
func (h *harness) sync(t *testing.T) *autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	stored, err := h.client.AutoscalingV2().HorizontalPodAutoscalers(testNS).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = h.c.reconcile(context.Background(), stored.DeepCopy(), testNS+"/web")
	out, err := h.client.AutoscalingV2().HorizontalPodAutoscalers(testNS).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// drainEvents returns the events recorded since the last call.
func (h *harness) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-h.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func cpuHPA(mutate func(*autoscalingv2.HorizontalPodAutoscaler)) *autoscalingv2.HorizontalPodAutoscaler {
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: testNS, Generation: 1},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    ptr.To[int32](1), MaxReplicas: 3,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](50)}}}},
		},
	}
	if mutate != nil {
		mutate(hpa)
	}
	return hpa
}

func wantCondition(t *testing.T, hpa *autoscalingv2.HorizontalPodAutoscaler, ct autoscalingv2.HorizontalPodAutoscalerConditionType, status corev1.ConditionStatus, reason, message string) {
	t.Helper()
	for _, c := range hpa.Status.Conditions {
		if c.Type == ct {
			if c.Status != status || c.Reason != reason || (message != "" && c.Message != message) {
				t.Errorf("%s = %s %s %q; want %s %s %q", ct, c.Status, c.Reason, c.Message, status, reason, message)
			}
			return
		}
	}
	t.Errorf("no %s condition in %+v", ct, hpa.Status.Conditions)
}

func wantEvents(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A pod burning 10x its request scales 1 -> 3 (the maximum), reported as
// upstream reports it.
func TestScaleUpToMax(t *testing.T) {
	h := newHarness(t, 1, cpuHPA(nil))
	h.usage = 500 // 1000m of a 200m request: 500%
	hpa := h.sync(t)
	if len(h.writes) != 1 || h.writes[0] != 3 {
		t.Fatalf("scale writes = %v; want [3]", h.writes)
	}
	wantEvents(t, h.drainEvents(), "Normal SuccessfulRescale New size: 3; reason: cpu resource utilization (percentage of request) above target")
	wantCondition(t, hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededRescale", "the HPA controller was able to update the target scale to 3")
	wantCondition(t, hpa, autoscalingv2.ScalingActive, corev1.ConditionTrue, "ValidMetricFound", "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)")
	wantCondition(t, hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
	st := hpa.Status
	if st.CurrentReplicas != 1 || st.DesiredReplicas != 3 || st.LastScaleTime == nil || ptr.Deref(st.ObservedGeneration, 0) != 1 {
		t.Errorf("status = %+v; want current 1, desired 3, a lastScaleTime, observedGeneration 1", st)
	}
	if m := st.CurrentMetrics; len(m) != 1 || *m[0].Resource.Current.AverageUtilization != 500 || m[0].Resource.Current.AverageValue.String() != "1" {
		t.Errorf("currentMetrics = %+v; want 500%% and 1 CPU", m)
	}
}

// Without behavior, scale-up is limited to max(2 x current, 4).
func TestScaleUpRateWithoutBehavior(t *testing.T) {
	h := newHarness(t, 2, cpuHPA(func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.MaxReplicas = 20 }))
	h.usage = 500
	hpa := h.sync(t)
	if len(h.writes) != 1 || h.writes[0] != 4 {
		t.Fatalf("scale writes = %v; want [4]", h.writes)
	}
	wantCondition(t, hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
}

// A drop in load scales down only once the stabilization window holds no
// higher recommendation.
func TestDownscaleStabilization(t *testing.T) {
	h := newHarness(t, 3, cpuHPA(nil))
	h.usage = 5 // 5%
	hpa := h.sync(t)
	if len(h.writes) != 0 {
		t.Fatalf("scale writes = %v within the stabilization window; want none", h.writes)
	}
	wantCondition(t, hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation")
	wantCondition(t, hpa, autoscalingv2.ScalingLimited, corev1.ConditionFalse, "DesiredWithinRange", "the desired count is within the acceptable range")
	if hpa.Status.DesiredReplicas != 3 {
		t.Errorf("desiredReplicas = %d; want 3", hpa.Status.DesiredReplicas)
	}
	h.clock.Step(4 * time.Minute)
	h.sync(t)
	if len(h.writes) != 0 {
		t.Fatalf("scale writes = %v after 4m; want none", h.writes)
	}
	h.clock.Step(61 * time.Second)
	hpa = h.sync(t)
	if len(h.writes) != 1 || h.writes[0] != 1 {
		t.Fatalf("scale writes = %v after 5m1s; want [1]", h.writes)
	}
	wantEvents(t, h.drainEvents(), "Normal SuccessfulRescale New size: 1; reason: All metrics below target")
	wantCondition(t, hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededRescale", "the HPA controller was able to update the target scale to 1")
	// One idle pod proposes zero, fewer than the minimum, once the
	// window's recommendations of 1 have aged out.
	h.setPods(t, 1)
	h.usage = 0
	h.clock.Step(6 * time.Minute)
	hpa = h.sync(t)
	wantCondition(t, hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, "TooFewReplicas", "the desired replica count is less than the minimum replica count")
}

// Within tolerance nothing is written.
func TestWithinTolerance(t *testing.T) {
	h := newHarness(t, 2, cpuHPA(nil))
	h.usage = 54 // 54% of a 50% target
	hpa := h.sync(t)
	if len(h.writes) != 0 || hpa.Status.DesiredReplicas != 2 {
		t.Fatalf("scale writes = %v, desired %d; want none, 2", h.writes, hpa.Status.DesiredReplicas)
	}
	wantCondition(t, hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "ReadyForNewScale", "recommended size matches current size")
}

// Metrics that cannot be read stop scaling, with upstream's events and
// ScalingActive condition.
func TestMetricsUnavailable(t *testing.T) {
	h := newHarness(t, 2, cpuHPA(nil))
	h.metrErr = errors.New(`the server could not find the requested resource (get pods.metrics.k8s.io)`)
	hpa := h.sync(t)
	if len(h.writes) != 0 {
		t.Fatalf("scale writes = %v; want none", h.writes)
	}
	inner := "failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)"
	wantEvents(t, h.drainEvents(),
		"Warning FailedGetResourceMetric "+inner,
		"Warning FailedComputeMetricsReplicas invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: "+inner)
	wantCondition(t, hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "FailedGetResourceMetric", "the HPA was unable to compute the replica count: "+inner)
	wantCondition(t, hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededGetScale", "the HPA controller was able to get the target's current scale")
	if hpa.Status.CurrentReplicas != 2 {
		t.Errorf("currentReplicas = %d; want 2", hpa.Status.CurrentReplicas)
	}
}

// A target whose kind is unknown cannot be scaled.
func TestUnknownTarget(t *testing.T) {
	h := newHarness(t, 2, cpuHPA(func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.ScaleTargetRef.Kind = "Widget" }))
	hpa := h.sync(t)
	events := h.drainEvents()
	if len(events) != 1 || !strings.HasPrefix(events[0], "Warning FailedGetScale no matches for") || !strings.Contains(events[0], "Widget") {
		t.Errorf("events = %q; want one FailedGetScale naming the kind", events)
	}
	for _, c := range hpa.Status.Conditions {
		if c.Type == autoscalingv2.AbleToScale && (c.Status != corev1.ConditionFalse || c.Reason != "FailedGetScale" ||
			!strings.HasPrefix(c.Message, "the HPA controller was unable to get the target's current scale: no matches for")) {
			t.Errorf("AbleToScale = %+v", c)
		}
	}
}

// A target at zero replicas that this controller did not scale there is
// left alone; one above the maximum is brought down to it.
func TestOutOfRangeTargets(t *testing.T) {
	h := newHarness(t, 0, cpuHPA(nil))
	hpa := h.sync(t)
	if len(h.writes) != 0 {
		t.Errorf("writes = %v for a target at zero; want none", h.writes)
	}
	wantCondition(t, hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")

	h = newHarness(t, 5, cpuHPA(nil))
	h.sync(t)
	if len(h.writes) != 1 || h.writes[0] != 3 {
		t.Errorf("writes = %v for a target at 5 with maxReplicas 3; want [3]", h.writes)
	}
	wantEvents(t, h.drainEvents(), "Normal SuccessfulRescale New size: 3; reason: Current number of replicas above Spec.MaxReplicas")
}

// A selector missing from the scale is reported, not guessed.
func TestMissingSelector(t *testing.T) {
	h := newHarness(t, 2, cpuHPA(nil))
	h.scale.Status.Selector = ""
	hpa := h.sync(t)
	wantCondition(t, hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "InvalidSelector", "the HPA target's scale is missing a selector")
	wantEvents(t, h.drainEvents(), "Warning SelectorRequired selector is required",
		"Warning FailedComputeMetricsReplicas selector is required")
}

// Two HPAs selecting the same pods both refuse to act.
func TestAmbiguousSelector(t *testing.T) {
	h := newHarness(t, 2, cpuHPA(nil))
	h.c.selectors.put(testNS, "other", testSelector)
	hpa := h.sync(t)
	msg := "pods by selector name=web are controlled by more than one HPA (e.g. [test-ns/other test-ns/web])"
	wantCondition(t, hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "AmbiguousSelector", msg)
	if len(h.writes) != 0 {
		t.Errorf("writes = %v; want none", h.writes)
	}
}

// TestSyncWaitsForItsOwnStatusWrite: after a sync wrote the HPA's status, a
// sync on an HPA cache that has not seen that write is held back (a retried
// freshness.StaleError, as upstream's StaleControllerConsistencyHPA) and
// goes on once the cache has it.
func TestSyncWaitsForItsOwnStatusWrite(t *testing.T) {
	hpa := cpuHPA(func(h *autoscalingv2.HorizontalPodAutoscaler) { h.ResourceVersion = "5" })
	h := newHarness(t, 2, hpa)
	h.usage = 150
	h.client.PrependReactor("update", "horizontalpodautoscalers", func(a core.Action) (bool, runtime.Object, error) {
		a.(core.UpdateAction).GetObject().(*autoscalingv2.HorizontalPodAutoscaler).ResourceVersion = "9"
		return false, nil, nil
	})
	key := testNS + "/web"
	if _, err := h.c.sync(context.Background(), key); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	stored, err := h.client.AutoscalingV2().HorizontalPodAutoscalers(testNS).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil || stored.ResourceVersion != "9" {
		t.Fatalf("the first sync wrote no status (resourceVersion %q, %v)", stored.ResourceVersion, err)
	}
	if _, err := h.c.sync(context.Background(), key); !freshness.IsStale(err) {
		t.Fatalf("sync on a cache behind the status write: %v, want a freshness.StaleError", err)
	}
	if err := h.hpas.Update(stored); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.sync(context.Background(), key); err != nil {
		t.Fatalf("sync once the cache has the write: %v", err)
	}
}
