package autoscaling

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
)

// workload is a Deployment or StatefulSet "burn" of one pod requesting
// 100m CPU whose container spins until the Unix time deadline, then idles.
// Every replica, including those the HPA adds, stops at the same time. Its
// 200m limit keeps the utilization far above the 50% target (200%) while
// the six pods of a scaled-up run take at most 1.2 of the machine's cores,
// not six spinning ones.
func workload(kind, image string, deadline int64) string {
	apiVersion, extra := "apps/v1", ""
	if kind == "StatefulSet" {
		extra = "  serviceName: burn\n  podManagementPolicy: Parallel\n"
	}
	return fmt.Sprintf(`apiVersion: %s
kind: %s
metadata:
  name: burn
spec:
  replicas: 1
%s  selector:
    matchLabels: {app: burn}
  template:
    metadata:
      labels: {app: burn}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: burn
        image: %s
        imagePullPolicy: Never
        command: ["sh", "-c", "while [ \"$(date +%%s)\" -lt %d ]; do :; done; exec sleep 100000"]
        resources:
          requests: {cpu: 100m}
          limits: {cpu: 200m}
`, apiVersion, kind, extra, image, deadline)
}

// TestHPA: `kubectl autoscale --cpu-percent=50` on a Deployment and on a
// StatefulSet whose pods burn a CPU scales each to its maximum of 3, and
// back to 1 once the load stops and the (shortened) downscale
// stabilization has passed. Both run at once on one cluster.
func TestHPA(t *testing.T) {
	c := startCluster(t)
	for _, tc := range []struct {
		kind string
		gr   schema.GroupResource
	}{
		{"Deployment", schema.GroupResource{Group: "apps", Resource: "deployments"}},
		{"StatefulSet", schema.GroupResource{Group: "apps", Resource: "statefulsets"}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			autoscale(t, c, tc.kind, tc.gr)
		})
	}
}

// The load lasts long enough for metrics to show it and the HPA to act.
const loadDuration = 150 * time.Second

func autoscale(t *testing.T, c *cluster, kind string, gr schema.GroupResource) {
	ns := c.namespace(t, strings.ToLower(kind))
	deadline := time.Now().Add(loadDuration)
	c.kubectl(t, workload(kind, nodeagent.BusyboxImage, deadline.Unix()), "apply", "-n", ns, "-f", "-")
	c.kubectl(t, "", "-n", ns, "autoscale", strings.ToLower(kind)+"/burn", "--cpu-percent=50", "--min=1", "--max=3")

	// Scale-up: to the maximum, limited by it (the burning pods ask for
	// far more), with the metric in status.
	hpa := c.waitHPA(t, ns, loadDuration, "scaled to 3 with the load above target", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		return h.Status.CurrentReplicas == 3 && h.Status.DesiredReplicas == 3 &&
			hasCondition(h, autoscalingv2.ScalingLimited, v1.ConditionTrue, "TooManyReplicas")
	})
	if time.Now().After(deadline) {
		t.Fatalf("the load stopped before the checks of the scaled-up state could run; status %+v", hpa.Status)
	}
	c.checkReplicas(t, ns, gr, 3)
	requireCondition(t, hpa, autoscalingv2.AbleToScale, v1.ConditionTrue, "", "")
	requireCondition(t, hpa, autoscalingv2.ScalingActive, v1.ConditionTrue, "ValidMetricFound",
		"the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)")
	requireCondition(t, hpa, autoscalingv2.ScalingLimited, v1.ConditionTrue, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
	if len(hpa.Status.CurrentMetrics) != 1 || hpa.Status.CurrentMetrics[0].Resource == nil ||
		hpa.Status.CurrentMetrics[0].Resource.Current.AverageUtilization == nil || *hpa.Status.CurrentMetrics[0].Resource.Current.AverageUtilization <= 50 {
		t.Errorf("currentMetrics = %+v; want cpu utilization above the 50%% target", hpa.Status.CurrentMetrics)
	}
	c.requireEvent(t, ns, "SuccessfulRescale", "New size: 3; reason: cpu resource utilization (percentage of request) above target")

	// Scale-down: held by the stabilization window first, then to 1.
	sawStabilized := false
	c.waitHPA(t, ns, loadDuration+3*time.Minute, "scaled back to 1 after the load stopped", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		if hasCondition(h, autoscalingv2.AbleToScale, v1.ConditionTrue, "ScaleDownStabilized") {
			sawStabilized = true
		}
		return h.Status.CurrentReplicas == 1 && h.Status.DesiredReplicas == 1
	})
	if !sawStabilized {
		t.Error("the HPA never reported AbleToScale ScaleDownStabilized before scaling down")
	}
	c.checkReplicas(t, ns, gr, 1)
	c.requireEvent(t, ns, "SuccessfulRescale", "New size: 1; reason: All metrics below target")
	// Idle pods propose fewer than the minimum.
	c.waitHPA(t, ns, time.Minute, "limited by minReplicas", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		return hasCondition(h, autoscalingv2.ScalingLimited, v1.ConditionTrue, "TooFewReplicas")
	})
	if out := c.kubectl(t, "", "-n", ns, "describe", "hpa", "burn"); !strings.Contains(out, "SuccessfulRescale") || !strings.Contains(out, "ScalingActive") {
		t.Errorf("kubectl describe hpa shows no rescale or conditions:\n%s", out)
	}
}

// waitHPA polls the HPA "burn" until cond holds.
func (c *cluster) waitHPA(t *testing.T, ns string, timeout time.Duration, what string, cond func(*autoscalingv2.HorizontalPodAutoscaler) bool) *autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	var last *autoscalingv2.HorizontalPodAutoscaler
	harness.Eventually(t, timeout, "hpa "+ns+"/burn: "+what, func() (bool, string) {
		h, err := c.client.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(context.Background(), "burn", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		last = h
		return cond(h), fmt.Sprintf("status %+v", h.Status)
	})
	return last
}

// checkReplicas reads the target's spec.replicas through its scale.
func (c *cluster) checkReplicas(t *testing.T, ns string, gr schema.GroupResource, want int32) {
	t.Helper()
	var got int32
	switch gr.Resource {
	case "deployments":
		d, err := c.client.AppsV1().Deployments(ns).GetScale(context.Background(), "burn", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got = d.Spec.Replicas
	case "statefulsets":
		s, err := c.client.AppsV1().StatefulSets(ns).GetScale(context.Background(), "burn", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got = s.Spec.Replicas
	}
	if got != want {
		t.Errorf("%s burn has spec.replicas %d; want %d", gr, got, want)
	}
}

func hasCondition(h *autoscalingv2.HorizontalPodAutoscaler, ct autoscalingv2.HorizontalPodAutoscalerConditionType, status v1.ConditionStatus, reason string) bool {
	for _, c := range h.Status.Conditions {
		if c.Type == ct {
			return c.Status == status && (reason == "" || c.Reason == reason)
		}
	}
	return false
}

func requireCondition(t *testing.T, h *autoscalingv2.HorizontalPodAutoscaler, ct autoscalingv2.HorizontalPodAutoscalerConditionType, status v1.ConditionStatus, reason, message string) {
	t.Helper()
	for _, c := range h.Status.Conditions {
		if c.Type == ct {
			if c.Status != status || (reason != "" && c.Reason != reason) || (message != "" && c.Message != message) {
				t.Errorf("condition %s = %s %s %q; want %s %s %q", ct, c.Status, c.Reason, c.Message, status, reason, message)
			}
			return
		}
	}
	t.Errorf("no condition %s in %+v", ct, h.Status.Conditions)
}

// requireEvent waits for an Event about the HPA with reason and message.
func (c *cluster) requireEvent(t *testing.T, ns, reason, message string) {
	t.Helper()
	harness.Eventually(t, 30*time.Second, "event "+reason+": "+message, func() (bool, string) {
		list, err := c.client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=burn,involvedObject.kind=HorizontalPodAutoscaler"})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range list.Items {
			if e.Reason == reason && e.Message == message && e.Source.Component == "horizontal-pod-autoscaler" {
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, strings.Join(seen, "; ")
	})
}
