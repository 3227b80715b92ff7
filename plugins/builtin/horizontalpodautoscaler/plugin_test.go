package horizontalpodautoscaler

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/sdk"
)

// TestConfig: bad values are refused naming the key and the fix.
func TestConfig(t *testing.T) {
	cases := []struct{ config, want string }{
		{`{"workers": 0}`, "workers is 0: set it between 1 and 64"},
		{`{"syncPeriod": "100ms"}`, `syncPeriod is 100ms: set it to 1s or more (e.g. "15s")`},
		{`{"tolerance": 1.5}`, "tolerance is 1.5: set it to a ratio from 0 up to (not including) 1 (e.g. 0.1)"},
		{`{"downscaleStabilization": "-1s"}`, `downscaleStabilization is -1s: set it to 0s or more (e.g. "5m")`},
		{`{"cpuInitializationPeriod": "-1s"}`, "cpuInitializationPeriod is -1s"},
		{`{"initialReadinessDelay": "-1s"}`, "initialReadinessDelay is -1s"},
		{`{"downscaleStabilisation": "1m"}`, `unknown field "downscaleStabilisation"`},
	}
	for _, tc := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := sdk.RunLocal(ctx, Plugin(), sdk.LocalOptions{
			RESTConfig: &rest.Config{Host: "https://127.0.0.1:1"},
			Config:     json.RawMessage(tc.config),
			Logger:     slog.New(slog.DiscardHandler),
		})
		cancel()
		if err == nil || !strings.Contains(err.Error(), "plugins.config."+Name) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %s: %v; want an error naming plugins.config.%s and %q", tc.config, err, Name, tc.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("the defaults are invalid: %v", err)
	}
	d := DefaultConfig()
	if d.SyncPeriod.Duration != 15*time.Second || d.Tolerance != 0.1 || d.DownscaleStabilization.Duration != 5*time.Minute ||
		d.CPUInitializationPeriod.Duration != 5*time.Minute || d.InitialReadinessDelay.Duration != 30*time.Second || d.Workers != 5 {
		t.Errorf("defaults = %+v; want kube-controller-manager's", d)
	}
}

// TestTransform keeps what the calculator reads and drops the rest.
func TestTransform(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	p := buildPod(0, podSpec{cpuMillis: 100, start: testNow})
	p.Spec.NodeName = "n1"
	p.Spec.Containers[0].Image = "busybox"
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "b"}}
	p.Spec.InitContainers = []corev1.Container{{Name: "init"}, {Name: "sidecar", RestartPolicy: &always,
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}}}}
	p.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue})
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "x"}}
	obj, err := transform(p)
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*corev1.Pod)
	if got.Spec.NodeName != "" || got.Spec.Containers[0].Image != "" || got.Spec.Containers[0].Env != nil || got.ManagedFields != nil {
		t.Errorf("kept unused fields: %+v", got)
	}
	if len(got.Spec.InitContainers) != 1 || got.Spec.InitContainers[0].Name != "sidecar" || len(got.Status.Conditions) != 1 ||
		got.Status.Conditions[0].Type != corev1.PodReady || got.Spec.Resources == nil || got.Status.StartTime == nil || got.Labels["name"] != "web" {
		t.Errorf("lost fields the calculator reads: %+v", got)
	}
	reqs, err := podRequests([]*corev1.Pod{got}, "", corev1.ResourceCPU)
	if err != nil || reqs["web-0"] != 1000 {
		t.Errorf("pod-level request after transform = %v, %v; want 1000m", reqs, err)
	}
	got.Spec.Resources = nil
	if reqs, err := podRequests([]*corev1.Pod{got}, "", corev1.ResourceCPU); err != nil || reqs["web-0"] != 250 {
		t.Errorf("container and sidecar requests after transform = %v, %v; want 250m", reqs, err)
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "h", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}}},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{MinReplicas: ptr.To[int32](2)}}
	if obj, _ := transform(hpa); obj.(*autoscalingv2.HorizontalPodAutoscaler).ManagedFields != nil || *obj.(*autoscalingv2.HorizontalPodAutoscaler).Spec.MinReplicas != 2 {
		t.Errorf("HPA transform = %+v", obj)
	}
}

// TestEventHandlers: a spec change syncs at once, a status write waits
// for the sync period, and a deleted HPA's history is dropped.
func TestEventHandlers(t *testing.T) {
	h := newHarness(t, 2, cpuHPA(nil))
	handlers := h.c.hpaEvents()
	old := cpuHPA(nil)
	statusOnly := old.DeepCopy()
	statusOnly.Status.CurrentReplicas = 2
	handlers.OnUpdate(old, statusOnly)
	if h.c.queue.Len() != 0 {
		t.Fatalf("a status-only update queued the HPA at once")
	}
	h.clock.Step(15 * time.Second)
	waitQueued(t, h, 1)
	key, _ := h.c.queue.Get()
	h.c.queue.Done(key)
	changed := old.DeepCopy()
	changed.Generation = 2
	handlers.OnUpdate(old, changed)
	if h.c.queue.Len() != 1 {
		t.Fatalf("a spec change did not queue the HPA at once")
	}
	h.c.history.recordInitial(testNS+"/gone", 3)
	h.c.selectors.put(testNS, "gone", testSelector)
	res, err := h.c.sync(context.Background(), testNS+"/gone")
	if err != nil || res.RequeueAfter != 0 || h.c.history.recommendations[testNS+"/gone"] != nil || len(h.c.selectors.all[testNS]) != 0 {
		t.Errorf("sync of a deleted HPA = %+v, %v; history %v, selectors %v", res, err, h.c.history.recommendations, h.c.selectors.all)
	}
	if res, err := h.c.sync(context.Background(), testNS+"/web"); err != nil || res.RequeueAfter != 15*time.Second {
		t.Errorf("sync = %+v, %v; want a requeue after the sync period", res, err)
	}
}

func waitQueued(t *testing.T, h *harness, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.c.queue.Len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("queue length %d; want %d", h.c.queue.Len(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
