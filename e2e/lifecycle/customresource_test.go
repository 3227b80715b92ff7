package lifecycle

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var widgets = schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}

const widgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

// ensureWidgetCRD installs the Widget custom resource once.
func (c *cluster) ensureWidgetCRD(t *testing.T) {
	t.Helper()
	c.kubectlIn(t, widgetCRD, "apply", "-f", "-")
	c.kubectl(t, "wait", "--for=condition=established", "--timeout=2m", "crd/widgets.example.com")
}

// widget creates a Widget and returns an owner reference to it.
func (c *cluster) widget(t *testing.T, ns, name string) metav1.OwnerReference {
	t.Helper()
	c.kubectlIn(t, fmt.Sprintf("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: %s\n", name), "-n", ns, "apply", "-f", "-")
	w, err := c.dyn.Resource(widgets).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting widget %s: %v", name, err)
	}
	return ownerRef("example.com/v1", "Widget", name, w.GetUID(), true)
}

// testCustomResourceOwner deletes custom resources owning ConfigMaps in
// all three propagation modes.
func (c *cluster) testCustomResourceOwner(t *testing.T) {
	ctx := context.Background()
	ns := c.newNamespace(t, "gc-custom")
	c.ensureWidgetCRD(t)
	cms := c.kube.CoreV1().ConfigMaps(ns)
	widgetGone := func(name string) func() error {
		return gone(func() error {
			_, err := c.dyn.Resource(widgets).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			return err
		})
	}
	cmGone := func(name string) func() error {
		return gone(func() error {
			_, err := cms.Get(ctx, name, metav1.GetOptions{})
			return err
		})
	}

	t.Run("Background", func(t *testing.T) {
		ref := c.widget(t, ns, "bg")
		c.configMap(t, ns, "bg-a", ref)
		c.configMap(t, ns, "bg-b", ref)
		c.kubectl(t, "-n", ns, "delete", "widget", "bg")
		eventually(t, "configmaps of a deleted widget collected", func() error {
			for _, n := range []string{"bg-a", "bg-b"} {
				if err := cmGone(n)(); err != nil {
					return fmt.Errorf("%s: %w", n, err)
				}
			}
			return nil
		})
	})
	t.Run("Foreground", func(t *testing.T) {
		ref := c.widget(t, ns, "fg")
		c.configMap(t, ns, "fg-a", ref)
		held := c.configMap(t, ns, "fg-held", ref)
		c.kubectl(t, "-n", ns, "patch", "configmap", held.Name, "--type=merge", "-p", `{"metadata":{"finalizers":["`+holdFinalizer+`"]}}`)
		c.kubectl(t, "-n", ns, "delete", "widget", "fg", "--cascade=foreground", "--wait=false")
		eventually(t, "unheld dependent deleted first", cmGone("fg-a"))
		w, err := c.dyn.Resource(widgets).Namespace(ns).Get(ctx, "fg", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the widget must wait for its held dependent: %v", err)
		}
		if w.GetDeletionTimestamp() == nil {
			t.Errorf("widget not marked for deletion while waiting")
		}
		c.kubectl(t, "-n", ns, "patch", "configmap", held.Name, "--type=merge", "-p", `{"metadata":{"finalizers":null}}`)
		eventually(t, "held dependent gone", cmGone(held.Name))
		eventually(t, "widget deleted after its dependents", widgetGone("fg"))
	})
	t.Run("Orphan", func(t *testing.T) {
		ref := c.widget(t, ns, "orphan")
		c.configMap(t, ns, "orphan-a", ref)
		c.kubectl(t, "-n", ns, "delete", "widget", "orphan", "--cascade=orphan")
		eventually(t, "widget deleted", widgetGone("orphan"))
		eventually(t, "configmap orphaned", func() error {
			cm, err := cms.Get(ctx, "orphan-a", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(cm.OwnerReferences) != 0 {
				return fmt.Errorf("still owned: %v", cm.OwnerReferences)
			}
			return nil
		})
	})
}
