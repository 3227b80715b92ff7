package workloads

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/podready"
	"github.com/keelson/keelson/plugins/builtin"
)

// waitTimeout bounds every wait; generous, the machine is shared.
const waitTimeout = 2 * time.Minute

// cluster is a keelson server with the workload plugins running against it.
type cluster struct {
	*harness.Server
	client kubernetes.Interface
}

var pluginGVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugins"}

// startCluster starts a server that runs the named built-in plugins (and
// the garbage collector once it is built in, see orphanDelete) as its
// plugin host does in production: each its own `keelson plugin NAME`
// process with its own least-privilege identity. It returns once every
// one of them reports ready.
func startCluster(t *testing.T, plugins ...string) *cluster {
	t.Helper()
	return startClusterWith(t, nil, plugins...)
}

// startClusterWith is startCluster with extra `keelson server` flags
// (plugin configuration, say).
func startClusterWith(t *testing.T, args []string, plugins ...string) *cluster {
	t.Helper()
	if _, ok := builtin.Lookup(gcPlugin); ok {
		plugins = append(plugins, gcPlugin)
	}
	s := harness.StartServer(t, harness.ServerOptions{Plugins: plugins, Args: args})
	c := &cluster{Server: s, client: s.Clientset(t)}
	dyn, err := dynamic.NewForConfig(s.RESTConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range plugins {
		eventually(t, "plugin "+name+" running", func() error {
			obj, err := dyn.Resource(pluginGVR).Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			state, _, _ := unstructured.NestedString(obj.Object, "status", "state")
			ready, _, _ := unstructured.NestedBool(obj.Object, "status", "ready")
			if state != "running" || !ready {
				return fmt.Errorf("state %q ready %v: %v", state, ready, obj.Object["status"])
			}
			return nil
		})
	}
	return c
}

// namespace creates namespace name with its default ServiceAccount, which
// pod admission requires (the serviceaccount plugin would create it).
func (c *cluster) namespace(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	sa := &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := c.client.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating the default ServiceAccount of %s: %v", name, err)
	}
}

// readyPods marks the pods of namespace ready as they appear (except those
// hold returns true for) until the test ends.
func (c *cluster) readyPods(t *testing.T, namespace string, hold func(*v1.Pod) bool) *podready.Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, err := (podready.Driver{Hold: hold}).Start(ctx, c.client, namespace)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// kubectl runs kubectl in namespace and returns stdout, failing the test on
// a non-zero exit.
func (c *cluster) kubectl(t *testing.T, namespace string, args ...string) string {
	t.Helper()
	return c.MustKubectl(t, append([]string{"-n", namespace}, args...)...)
}

// eventually polls cond until it returns nil, failing the test with its
// last error after waitTimeout.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, waitTimeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// podsControlledBy lists the pods of namespace whose controller is uid,
// leaving out those being deleted.
func (c *cluster) podsControlledBy(t *testing.T, namespace string, uid types.UID) []v1.Pod {
	t.Helper()
	list, err := c.client.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing pods: %v", err)
	}
	var out []v1.Pod
	for _, p := range list.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == uid && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// waitReleased waits until the pod name has no owner reference left.
func (c *cluster) waitReleased(t *testing.T, namespace, name string) {
	t.Helper()
	eventually(t, "pod "+name+" released", func() error {
		p, err := c.client.CoreV1().Pods(namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(p.OwnerReferences) != 0 {
			return fmt.Errorf("owner references %v", p.OwnerReferences)
		}
		return nil
	})
}

// waitControlled waits until n ready pods of namespace are controlled by
// uid and returns them.
func (c *cluster) waitControlled(t *testing.T, namespace string, uid types.UID, n int) []v1.Pod {
	t.Helper()
	var ps []v1.Pod
	eventually(t, fmt.Sprintf("%d ready pods controlled by %s", n, uid), func() error {
		ps = c.podsControlledBy(t, namespace, uid)
		ready := 0
		for i := range ps {
			if podready.IsReady(&ps[i]) {
				ready++
			}
		}
		if len(ps) != n || ready != n {
			return fmt.Errorf("%d pods, %d ready", len(ps), ready)
		}
		return nil
	})
	return ps
}

// checkControllerRefs fails unless every pod names its controller with
// controller=true and blockOwnerDeletion=true, as the garbage collector
// requires.
func checkControllerRefs(t *testing.T, ps []v1.Pod, kind, name string) {
	t.Helper()
	for _, p := range ps {
		ref := metav1.GetControllerOf(&p)
		if ref == nil || ref.Kind != kind || ref.Name != name || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
			t.Errorf("pod %s: controller reference %+v, want %s %s with blockOwnerDeletion", p.Name, ref, kind, name)
		}
	}
}

// waitReplicaSetStatus waits until the ReplicaSet's status, for its current
// generation, has the given counts.
func (c *cluster) waitReplicaSetStatus(t *testing.T, namespace, name string, replicas, ready, available int32) *appsv1.ReplicaSet {
	t.Helper()
	var rs *appsv1.ReplicaSet
	eventually(t, fmt.Sprintf("ReplicaSet %s status replicas=%d ready=%d available=%d", name, replicas, ready, available), func() error {
		var err error
		rs, err = c.client.AppsV1().ReplicaSets(namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := rs.Status
		if st.ObservedGeneration < rs.Generation || st.Replicas != replicas || st.ReadyReplicas != ready || st.AvailableReplicas != available {
			return fmt.Errorf("status %+v at generation %d", st, rs.Generation)
		}
		return nil
	})
	return rs
}

// eventsOf returns "Reason: message" of the Events about the object uid.
func (c *cluster) eventsOf(t *testing.T, namespace string, uid types.UID) []string {
	t.Helper()
	list, err := c.client.CoreV1().Events(namespace).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.uid=" + string(uid)})
	if err != nil {
		t.Fatalf("listing events: %v", err)
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Reason+": "+e.Message)
	}
	return out
}

// waitEvent waits for an Event about uid whose "Reason: message" starts
// with prefix.
func (c *cluster) waitEvent(t *testing.T, namespace string, uid types.UID, prefix string) {
	t.Helper()
	eventually(t, "event "+prefix, func() error {
		evs := c.eventsOf(t, namespace, uid)
		for _, e := range evs {
			if strings.HasPrefix(e, prefix) {
				return nil
			}
		}
		return fmt.Errorf("events: %q", evs)
	})
}
