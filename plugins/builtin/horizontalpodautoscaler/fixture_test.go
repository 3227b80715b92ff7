package horizontalpodautoscaler

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	corelisters "k8s.io/client-go/listers/core/v1"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	metricsapi "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsfake "k8s.io/metrics/pkg/client/clientset/versioned/fake"
	cmfake "k8s.io/metrics/pkg/client/custom_metrics/fake"
	emfake "k8s.io/metrics/pkg/client/external_metrics/fake"
	clocktesting "k8s.io/utils/clock/testing"
)

const testNS = "test-ns"

var (
	testNow      = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	testSelector = labels.SelectorFromSet(labels.Set{"name": "web"})
	hot          = testNow                       // started within the CPU initialization period
	cool         = testNow.Add(-3 * time.Minute) // started before it
)

// podSpec describes one test pod; zero values are a running, ready pod
// started long ago with the Ready condition's transition at the epoch.
type podSpec struct {
	phase     corev1.PodPhase
	ready     corev1.ConditionStatus
	start     time.Time
	deleted   bool
	cpuMillis int64 // request of each of its two containers
}

func buildPod(i int, s podSpec) *corev1.Pod {
	phase, ready := s.phase, s.ready
	if phase == "" {
		phase = corev1.PodRunning
	}
	if ready == "" {
		ready = corev1.ConditionTrue
	}
	start := metav1.NewTime(s.start)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Namespace: testNS, Labels: map[string]string{"name": "web"}},
		Status: corev1.PodStatus{Phase: phase, StartTime: &start,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}},
	}
	for _, name := range []string{"container1", "container2"} {
		c := corev1.Container{Name: name}
		if s.cpuMillis > 0 {
			c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(s.cpuMillis, resource.DecimalSI)}
		}
		p.Spec.Containers = append(p.Spec.Containers, c)
	}
	if s.deleted {
		p.DeletionTimestamp = &metav1.Time{Time: testNow}
	}
	return p
}

// podLister serves pods from an indexer.
func podLister(t *testing.T, pods []*corev1.Pod) corelisters.PodLister {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, p := range pods {
		if err := idx.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	return corelisters.NewPodLister(idx)
}

// resourceMetricsClient is the metrics.k8s.io fake answering with levels
// (pod index -> container usages, milli-cores), sampled at ts.
func resourceMetricsClient(levels [][]int64, ts time.Time) *metricsfake.Clientset {
	c := &metricsfake.Clientset{}
	c.AddReactor("list", "pods", func(core.Action) (bool, runtime.Object, error) {
		list := &metricsapi.PodMetricsList{}
		for i, lv := range levels {
			pm := metricsapi.PodMetrics{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Namespace: testNS, Labels: map[string]string{"name": "web"}},
				Timestamp: metav1.NewTime(ts), Window: metav1.Duration{Duration: time.Minute}}
			for j, v := range lv {
				pm.Containers = append(pm.Containers, metricsapi.ContainerMetrics{Name: fmt.Sprintf("container%d", j+1),
					Usage: corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(v, resource.DecimalSI)}})
			}
			list.Items = append(list.Items, pm)
		}
		return true, list, nil
	})
	return c
}

// newCalc builds a calculator over the fakes with upstream's testing
// initialization period (2m) and readiness delay (10s).
func newCalc(t *testing.T, pods []*corev1.Pod, m *apiMetrics) *calculator {
	return &calculator{metrics: m, pods: podLister(t, pods), clock: clocktesting.NewFakeClock(testNow),
		cpuInit: 2 * time.Minute, readinessDelay: 10 * time.Second}
}

func emptyMetrics() *apiMetrics {
	return &apiMetrics{resource: (&metricsfake.Clientset{}).MetricsV1beta1(), custom: &cmfake.FakeCustomMetricsClient{}, external: &emfake.FakeExternalMetricsClient{}}
}

func resourceMilli(v int64) *resource.Quantity {
	return resource.NewMilliQuantity(v, resource.DecimalSI)
}
