package workloads

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/keelson/keelson/plugins/builtin"
)

// gcPlugin is the garbage collector's built-in plugin name (branch
// lifecycle); while it is not built in, orphanDelete does its part.
const gcPlugin = "garbagecollector"

// orphanDelete runs `kubectl delete RESOURCE NAME --cascade=orphan` and
// waits until the object is gone with its dependents (of resource
// dependents) left behind without an owner reference to it.
//
// The API server only marks the object (deletionTimestamp and the orphan
// finalizer); the garbage collector then strips the dependents' owner
// references and removes the finalizer. When the garbage collector plugin
// is not built in yet, the test does exactly those two writes itself.
func (c *cluster) orphanDelete(t *testing.T, namespace string, gvr schema.GroupVersionResource, name string, uid types.UID, dependents schema.GroupVersionResource) {
	t.Helper()
	c.kubectl(t, namespace, "delete", gvr.Resource+"."+gvr.Group, name, "--cascade=orphan", "--wait=false")
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(c.RESTConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	res := dyn.Resource(gvr).Namespace(namespace)
	if _, gcBuiltIn := builtin.Lookup(gcPlugin); !gcBuiltIn {
		eventually(t, "orphan finalizer on "+name, func() error {
			obj, err := res.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if obj.GetDeletionTimestamp() == nil || !slices.Contains(obj.GetFinalizers(), metav1.FinalizerOrphanDependents) {
				return fmt.Errorf("not marked for orphaning: finalizers %v", obj.GetFinalizers())
			}
			return nil
		})
		deps, err := dyn.Resource(dependents).Namespace(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, dep := range deps.Items {
			if ref := metav1.GetControllerOf(&dep); ref == nil || ref.UID != uid {
				continue
			}
			patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"$patch":"delete","uid":%q}],"uid":%q}}`, uid, dep.GetUID())
			if _, err := dyn.Resource(dependents).Namespace(namespace).Patch(ctx, dep.GetName(), types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatalf("orphaning %s %s: %v", dependents.Resource, dep.GetName(), err)
			}
		}
		// The owner's controller may write its status meanwhile.
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			obj, err := res.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			rest := slices.DeleteFunc(obj.GetFinalizers(), func(f string) bool { return f == metav1.FinalizerOrphanDependents })
			patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": rest, "resourceVersion": obj.GetResourceVersion()}})
			_, err = res.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
			return err
		})
		if err != nil {
			t.Fatalf("removing the orphan finalizer of %s: %v", name, err)
		}
	}
	eventually(t, name+" deleted", func() error {
		_, err := res.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
}
