package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

const holdFinalizer = "keelson.test/hold"

// replicaSet creates a ReplicaSet and, as its controller would, replicas
// pods it owns (blocking owner deletion); no replicaset controller runs,
// so nothing else touches them.
func (c *cluster) replicaSet(t *testing.T, ns, name string, replicas int) (*appsv1.ReplicaSet, []*corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": name}
	rs, err := c.kube.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(int32(replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating replicaset %s: %v", name, err)
	}
	var pods []*corev1.Pod
	for i := range replicas {
		pods = append(pods, c.pod(t, ns, fmt.Sprintf("%s-%d", name, i), labels, ownerRef("apps/v1", "ReplicaSet", rs.Name, rs.UID, true)))
	}
	return rs, pods
}

func ownerRef(apiVersion, kind, name string, uid types.UID, block bool) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(block)}
}

func (c *cluster) pod(t *testing.T, ns, name string, labels map[string]string, owners ...metav1.OwnerReference) *corev1.Pod {
	t.Helper()
	p, err := c.kube.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, OwnerReferences: owners},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
	return p
}

func (c *cluster) configMap(t *testing.T, ns, name string, owners ...metav1.OwnerReference) *corev1.ConfigMap {
	t.Helper()
	cm, err := c.kube.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: owners},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating configmap %s: %v", name, err)
	}
	return cm
}

func (c *cluster) podGone(ctx context.Context, ns, name string) func() error {
	return gone(func() error {
		_, err := c.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
}

// release removes the test's finalizer from a pod.
func (c *cluster) release(t *testing.T, ns, pod string) {
	t.Helper()
	patch := `{"metadata":{"finalizers":null}}`
	if _, err := c.kube.CoreV1().Pods(ns).Patch(context.Background(), pod, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("releasing pod %s: %v", pod, err)
	}
}

func (c *cluster) testBackgroundDeletion(t *testing.T) {
	ctx := context.Background()
	ns := c.newNamespace(t, "gc-background")
	_, pods := c.replicaSet(t, ns, "web", 2)
	c.kubectl(t, "-n", ns, "delete", "replicaset", "web")
	for _, p := range pods {
		eventually(t, "pod "+p.Name+" collected after its replicaset", c.podGone(ctx, ns, p.Name))
	}
}

func (c *cluster) testForegroundDeletion(t *testing.T) {
	ctx := context.Background()
	ns := c.newNamespace(t, "gc-foreground")
	rs, pods := c.replicaSet(t, ns, "web", 1)
	// held blocks its owner's deletion until it is gone; loose does not.
	held := c.pod(t, ns, "held", nil, ownerRef("apps/v1", "ReplicaSet", rs.Name, rs.UID, true))
	loose := c.pod(t, ns, "loose", nil, ownerRef("apps/v1", "ReplicaSet", rs.Name, rs.UID, false))
	for _, p := range []string{held.Name, loose.Name} {
		c.kubectl(t, "-n", ns, "patch", "pod", p, "--type=merge", "-p", `{"metadata":{"finalizers":["`+holdFinalizer+`"]}}`)
	}
	c.kubectl(t, "-n", ns, "delete", "replicaset", "web", "--cascade=foreground", "--wait=false")

	eventually(t, "unblocked dependent deleted", c.podGone(ctx, ns, pods[0].Name))
	eventually(t, "held dependents terminating", func() error {
		for _, name := range []string{held.Name, loose.Name} {
			p, err := c.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.DeletionTimestamp == nil {
				return fmt.Errorf("pod %s not being deleted", name)
			}
		}
		return nil
	})
	// While held exists the owner waits, visibly.
	got, err := c.kube.AppsV1().ReplicaSets(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the owner must wait for its blocking dependent: %v", err)
	}
	if got.DeletionTimestamp == nil || !strings.Contains(strings.Join(got.Finalizers, ","), metav1.FinalizerDeleteDependents) {
		t.Errorf("owner finalizers %v, deletionTimestamp %v: want foregroundDeletion while waiting", got.Finalizers, got.DeletionTimestamp)
	}
	c.release(t, ns, held.Name)
	eventually(t, "owner deleted once its blocking dependent is gone", gone(func() error {
		_, err := c.kube.AppsV1().ReplicaSets(ns).Get(ctx, "web", metav1.GetOptions{})
		return err
	}))
	// The non-blocking dependent did not hold the owner up.
	if _, err := c.kube.CoreV1().Pods(ns).Get(ctx, loose.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("non-blocking dependent: %v (it should still be held by its own finalizer)", err)
	}
	c.release(t, ns, loose.Name)
	eventually(t, "non-blocking dependent deleted", c.podGone(ctx, ns, loose.Name))
}

func (c *cluster) testOrphanDeletion(t *testing.T) {
	ctx := context.Background()
	ns := c.newNamespace(t, "gc-orphan")
	// --cascade=orphan, and the seed's --cascade=false, which kubectl still
	// accepts as orphan.
	for _, tc := range []struct{ rs, flag string }{{"web", "--cascade=orphan"}, {"legacy", "--cascade=false"}} {
		_, pods := c.replicaSet(t, ns, tc.rs, 2)
		r := c.srv.Kubectl(t, "-n", ns, "delete", "replicaset", tc.rs, tc.flag)
		if r.ExitCode != 0 {
			t.Fatalf("kubectl delete %s:\n%s", tc.flag, r)
		}
		for _, p := range pods {
			eventually(t, "pod "+p.Name+" orphaned by "+tc.flag, func() error {
				got, err := c.kube.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if len(got.OwnerReferences) > 0 {
					return fmt.Errorf("still owned: %v", got.OwnerReferences)
				}
				return nil
			})
		}
		if _, err := c.kube.AppsV1().ReplicaSets(ns).Get(ctx, tc.rs, metav1.GetOptions{}); err == nil {
			t.Errorf("replicaset %s still exists after %s", tc.rs, tc.flag)
		}
	}
}

func (c *cluster) testDanglingOwner(t *testing.T) {
	ctx := context.Background()
	ns := c.newNamespace(t, "gc-dangling")
	parent := c.configMap(t, ns, "parent")
	ghost := ownerRef("v1", "ConfigMap", "ghost", "6d1f4e1a-0000-4000-8000-000000000001", false)
	ghost.Controller = nil
	c.configMap(t, ns, "orphan", ghost)
	c.configMap(t, ns, "shared", ghost, metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: parent.Name, UID: parent.UID})

	eventually(t, "object whose only owner never existed collected", gone(func() error {
		_, err := c.kube.CoreV1().ConfigMaps(ns).Get(ctx, "orphan", metav1.GetOptions{})
		return err
	}))
	eventually(t, "reference to the missing owner dropped, the object kept", func() error {
		cm, err := c.kube.CoreV1().ConfigMaps(ns).Get(ctx, "shared", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(cm.OwnerReferences) != 1 || cm.OwnerReferences[0].UID != parent.UID {
			return fmt.Errorf("owner references %v, want only the parent", cm.OwnerReferences)
		}
		return nil
	})
}

func (c *cluster) testInvalidNamespaceOwner(t *testing.T) {
	ctx := context.Background()
	home := c.newNamespace(t, "gc-owner-home")
	away := c.newNamespace(t, "gc-owner-away")
	parent := c.configMap(t, home, "parent")
	ref := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: parent.Name, UID: parent.UID}
	c.configMap(t, away, "stray", ref)
	// A cluster-scoped object cannot be owned by a namespaced one.
	role, err := c.kube.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "gc-invalid-owner", OwnerReferences: []metav1.OwnerReference{ref}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.kube.RbacV1().ClusterRoles().Delete(ctx, role.Name, metav1.DeleteOptions{}) })

	eventually(t, "namespaced dependent with an owner in another namespace collected", gone(func() error {
		_, err := c.kube.CoreV1().ConfigMaps(away).Get(ctx, "stray", metav1.GetOptions{})
		return err
	}))
	for _, w := range []struct{ ns, name string }{{away, "stray"}, {metav1.NamespaceDefault, role.Name}} {
		eventually(t, "OwnerRefInvalidNamespace event on "+w.name, func() error {
			evs, err := c.kube.CoreV1().Events(w.ns).List(ctx, metav1.ListOptions{
				FieldSelector: "reason=OwnerRefInvalidNamespace,involvedObject.name=" + w.name})
			if err != nil {
				return err
			}
			if len(evs.Items) == 0 {
				return errors.New("no event")
			}
			if e := evs.Items[0]; e.Type != corev1.EventTypeWarning || e.Source.Component != "garbage-collector-controller" {
				return fmt.Errorf("event %s from %q, want a Warning from garbage-collector-controller", e.Type, e.Source.Component)
			}
			return nil
		})
	}
	if _, err := c.kube.RbacV1().ClusterRoles().Get(ctx, role.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("a cluster-scoped object with a namespaced owner must be left alone: %v", err)
	}
}
