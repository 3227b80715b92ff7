package workloads

import (
	"context"
	"fmt"
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// The horizontalpodautoscaler plugin against a real API server, without a
// metrics API (e2e/autoscaling runs it with metrics on real agents): a
// target outside minReplicas/maxReplicas is brought inside through its
// /scale subresource (a Deployment, and a custom resource whose CRD is
// created while the plugin runs), and the missing metrics API is reported
// as upstream reports it.
func TestHPAScaleTargets(t *testing.T) {
	c := startClusterWith(t, []string{"--plugin-config", `horizontalpodautoscaler={"syncPeriod":"2s"}`},
		"deployment", "replicaset", "horizontalpodautoscaler")
	ns := "hpa"
	c.namespace(t, ns)
	c.KubectlIn(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 5
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "web:1", resources: {requests: {cpu: 100m}}}]
`, "apply", "-n", ns, "-f", "-")
	c.kubectl(t, ns, "autoscale", "deployment/web", "--cpu-percent=50", "--min=1", "--max=2")
	c.waitHPAEvent(t, ns, "web", "Normal", "SuccessfulRescale", "New size: 2; reason: Current number of replicas above Spec.MaxReplicas")
	eventually(t, "deployment web scaled to 2", func() error {
		s, err := c.client.AppsV1().Deployments(ns).GetScale(context.Background(), "web", metav1.GetOptions{})
		if err != nil || s.Spec.Replicas != 2 {
			return fmt.Errorf("scale %+v, %v", s, err)
		}
		return nil
	})
	// Within range, the metrics are needed: metrics.k8s.io is not served.
	msg := "failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)"
	c.waitHPAEvent(t, ns, "web", "Warning", "FailedGetResourceMetric", msg)
	c.waitHPAEvent(t, ns, "web", "Warning", "FailedComputeMetricsReplicas", "invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: "+msg)
	c.waitHPACondition(t, ns, "web", autoscalingv2.ScalingActive, v1.ConditionFalse, "FailedGetResourceMetric", "the HPA was unable to compute the replica count: "+msg)
	c.waitHPACondition(t, ns, "web", autoscalingv2.AbleToScale, v1.ConditionTrue, "SucceededGetScale", "the HPA controller was able to get the target's current scale")

	// A custom resource with a scale subresource, below minReplicas.
	c.KubectlIn(t, widgetCRD, "apply", "-f", "-")
	c.MustKubectl(t, "wait", "--for=condition=established", "--timeout=2m", "crd/widgets.autoscale.example.com")
	c.KubectlIn(t, "apiVersion: autoscale.example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {replicas: 1}\nstatus: {selector: app=w}\n", "apply", "-n", ns, "-f", "-")
	c.KubectlIn(t, `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: w}
spec:
  scaleTargetRef: {apiVersion: autoscale.example.com/v1, kind: Widget, name: w}
  minReplicas: 3
  maxReplicas: 6
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]
`, "apply", "-n", ns, "-f", "-")
	c.waitHPAEvent(t, ns, "w", "Normal", "SuccessfulRescale", "New size: 3; reason: Current number of replicas below Spec.MinReplicas")
	dyn, err := dynamic.NewForConfig(c.RESTConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	widgets := schema.GroupVersionResource{Group: "autoscale.example.com", Version: "v1", Resource: "widgets"}
	eventually(t, "widget w scaled to 3", func() error {
		w, err := dyn.Resource(widgets).Namespace(ns).Get(context.Background(), "w", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if r := w.Object["spec"].(map[string]any)["replicas"]; fmt.Sprint(r) != "3" {
			return fmt.Errorf("spec.replicas %v", r)
		}
		return nil
	})

	// minReplicas 0 is accepted (HPAScaleToZero is on in 1.37); a target
	// at zero replicas the HPA did not scale there is left alone.
	c.KubectlIn(t, `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: idle}
spec:
  scaleTargetRef: {apiVersion: autoscale.example.com/v1, kind: Widget, name: idle}
  minReplicas: 0
  maxReplicas: 2
  metrics: [{type: External, external: {metric: {name: queue}, target: {type: Value, value: "1"}}}]
`, "apply", "-n", ns, "-f", "-")
	c.KubectlIn(t, "apiVersion: autoscale.example.com/v1\nkind: Widget\nmetadata: {name: idle}\nspec: {replicas: 0}\nstatus: {selector: app=idle}\n", "apply", "-n", ns, "-f", "-")
	c.waitHPACondition(t, ns, "idle", autoscalingv2.ScalingActive, v1.ConditionFalse, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")

	// An HPA naming a kind the API does not serve.
	c.KubectlIn(t, `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: nothing}
spec:
  scaleTargetRef: {apiVersion: autoscale.example.com/v1, kind: Gadget, name: g}
  maxReplicas: 2
`, "apply", "-n", ns, "-f", "-")
	c.waitHPACondition(t, ns, "nothing", autoscalingv2.AbleToScale, v1.ConditionFalse, "FailedGetScale", "")
	c.waitHPAEvent(t, ns, "nothing", "Warning", "FailedGetScale", "")
}

const widgetCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.autoscale.example.com}
spec:
  group: autoscale.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas, labelSelectorPath: .status.selector}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

// waitHPAEvent waits for an event about the HPA name with the type and
// reason, and the message unless it is empty.
func (c *cluster) waitHPAEvent(t *testing.T, ns, name, typ, reason, message string) {
	t.Helper()
	eventually(t, "event "+reason+" on hpa "+name, func() error {
		list, err := c.client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
			FieldSelector: "involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=" + name})
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range list.Items {
			if e.Type == typ && e.Reason == reason && (message == "" || e.Message == message) && e.Source.Component == "horizontal-pod-autoscaler" {
				return nil
			}
			seen = append(seen, e.Type+" "+e.Reason+": "+e.Message)
		}
		return fmt.Errorf("events: %s", strings.Join(seen, "; "))
	})
}

// waitHPACondition waits for a condition of the HPA name (and its
// message unless empty).
func (c *cluster) waitHPACondition(t *testing.T, ns, name string, ct autoscalingv2.HorizontalPodAutoscalerConditionType, status v1.ConditionStatus, reason, message string) {
	t.Helper()
	eventually(t, fmt.Sprintf("hpa %s condition %s %s %s", name, ct, status, reason), func() error {
		h, err := c.client.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range h.Status.Conditions {
			if cond.Type == ct && cond.Status == status && cond.Reason == reason && (message == "" || cond.Message == message) {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", h.Status.Conditions)
	})
}
