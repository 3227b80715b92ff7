package lifecycle

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// contents puts objects of several kinds, a custom resource among them, in
// namespace ns.
func (c *cluster) contents(t *testing.T, ns string) {
	t.Helper()
	c.ensureWidgetCRD(t)
	c.kubectlIn(t, `apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: "1"}
---
apiVersion: v1
kind: Secret
metadata: {name: password}
stringData: {p: hunter2}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: gadget}
`, "-n", ns, "apply", "-f", "-")
	c.replicaSet(t, ns, "web", 2)
}

func (c *cluster) namespaceGone(ctx context.Context, ns string) func() error {
	return gone(func() error {
		_, err := c.kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return err
	})
}

func (c *cluster) testNamespaceDeletion(t *testing.T) {
	ctx := context.Background()
	ns := c.newNamespace(t, "doomed")
	c.contents(t, ns)
	c.kubectl(t, "delete", "namespace", ns, "--wait=false")
	eventually(t, "namespace and everything in it deleted", c.namespaceGone(ctx, ns))
	// Nothing of it is left behind, in any kind.
	for _, kind := range []string{"configmaps", "secrets", "services", "pods", "replicasets", "widgets.example.com", "serviceaccounts"} {
		out := c.kubectl(t, "get", kind, "-n", ns, "-o", "name")
		if strings.TrimSpace(out) != "" {
			t.Errorf("%s left in deleted namespace %s: %s", kind, ns, out)
		}
	}
}

func (c *cluster) testNamespaceBlockedByFinalizer(t *testing.T) {
	ctx := context.Background()
	ns := c.newNamespace(t, "stuck")
	c.contents(t, ns)
	c.kubectl(t, "-n", ns, "patch", "widget", "gadget", "--type=merge", "-p", `{"metadata":{"finalizers":["`+holdFinalizer+`"]}}`)
	c.kubectl(t, "delete", "namespace", ns, "--wait=false")

	want := map[corev1.NamespaceConditionType]string{
		corev1.NamespaceContentRemaining:    "Some resources are remaining: widgets.example.com has 1 resource instances",
		corev1.NamespaceFinalizersRemaining: "Some content in the namespace has finalizers remaining: " + holdFinalizer + " in 1 resource instances",
	}
	eventually(t, "conditions say what blocks the namespace", func() error {
		got, err := c.kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.Phase != corev1.NamespaceTerminating {
			return fmt.Errorf("phase %q", got.Status.Phase)
		}
		for typ, msg := range want {
			cond := condition(got, typ)
			if cond == nil || cond.Status != corev1.ConditionTrue || cond.Message != msg {
				return fmt.Errorf("condition %s = %+v, want True %q", typ, cond, msg)
			}
		}
		if cond := condition(got, corev1.NamespaceDeletionDiscoveryFailure); cond == nil || cond.Status != corev1.ConditionFalse {
			return fmt.Errorf("discovery condition %+v, want False", cond)
		}
		return nil
	})
	// Everything else is gone already; the namespace shows as Terminating.
	if out := c.kubectl(t, "get", "configmaps,pods,replicasets", "-n", ns, "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("content left while only the widget blocks: %s", out)
	}
	if out := c.kubectl(t, "get", "namespace", ns); !strings.Contains(out, "Terminating") {
		t.Errorf("kubectl get namespace shows:\n%s\nwant Terminating", out)
	}
	if out := c.kubectl(t, "describe", "namespace", ns); !strings.Contains(out, "SomeFinalizersRemain") {
		t.Errorf("kubectl describe namespace does not show the blocking finalizer:\n%s", out)
	}

	c.kubectl(t, "-n", ns, "patch", "widget", "gadget", "--type=merge", "-p", `{"metadata":{"finalizers":null}}`)
	eventually(t, "namespace deleted once the finalizer is gone", c.namespaceGone(ctx, ns))
}

func condition(ns *corev1.Namespace, t corev1.NamespaceConditionType) *corev1.NamespaceCondition {
	for i := range ns.Status.Conditions {
		if ns.Status.Conditions[i].Type == t {
			return &ns.Status.Conditions[i]
		}
	}
	return nil
}
