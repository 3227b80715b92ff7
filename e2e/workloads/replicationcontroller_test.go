package workloads

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/keelson/keelson/plugins/builtin/replicationcontroller"
)

// waitRCStatus waits until the ReplicationController's status, for its
// current generation, has the given counts.
func (c *cluster) waitRCStatus(t *testing.T, namespace, name string, replicas, ready, available int32) *v1.ReplicationController {
	t.Helper()
	var rc *v1.ReplicationController
	eventually(t, fmt.Sprintf("ReplicationController %s status replicas=%d ready=%d available=%d", name, replicas, ready, available), func() error {
		var err error
		rc, err = c.client.CoreV1().ReplicationControllers(namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := rc.Status
		if st.ObservedGeneration < rc.Generation || st.Replicas != replicas || st.ReadyReplicas != ready || st.AvailableReplicas != available || st.FullyLabeledReplicas != replicas {
			return fmt.Errorf("status %+v at generation %d", st, rc.Generation)
		}
		return nil
	})
	return rc
}

// waitPluginMessage waits until the plugin's status message starts with
// prefix.
func (c *cluster) waitPluginMessage(t *testing.T, name, prefix string) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(c.RESTConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, fmt.Sprintf("plugin %s status message %q...", name, prefix), func() error {
		obj, err := dyn.Resource(pluginGVR).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if msg, _, _ := unstructured.NestedString(obj.Object, "status", "message"); !strings.HasPrefix(msg, prefix) {
			return fmt.Errorf("message %q", msg)
		}
		return nil
	})
}

// TestReplicationControllerNginx walks the seed's nginx
// ReplicationController through chapter 3.2.2: create, scale, isolate a pod
// (an equality-based selector), delete leaving the pods and adopt them
// with a new ReplicationController.
func TestReplicationControllerNginx(t *testing.T) {
	c := startCluster(t, replicationcontroller.Name)
	const ns = "rc"
	c.namespace(t, ns)
	c.readyPods(t, ns, nil)
	// No ReplicationController exists yet: the plugin keeps no pod cache
	// and says so; the first one created starts its caches.
	c.waitPluginMessage(t, replicationcontroller.Name, "idle: no ReplicationControllers exist")

	c.kubectl(t, ns, "apply", "-f", "testdata/nginx-replicationcontroller.yaml")
	rc := c.waitRCStatus(t, ns, "nginx", 3, 3, 3)
	c.waitPluginMessage(t, replicationcontroller.Name, "informer caches synced")
	checkControllerRefs(t, c.podsControlledBy(t, ns, rc.UID), "ReplicationController", "nginx")
	c.waitEvent(t, ns, rc.UID, "SuccessfulCreate: Created pod: nginx-")
	if out := c.kubectl(t, ns, "get", "rc", "nginx", "--no-headers"); !strings.HasPrefix(strings.Join(strings.Fields(out), " "), "nginx 3 3 3") {
		t.Errorf("kubectl get rc: %q, want nginx 3 desired 3 current 3 ready", out)
	}

	c.kubectl(t, ns, "scale", "rc", "nginx", "--replicas=10")
	c.waitRCStatus(t, ns, "nginx", 10, 10, 10)
	c.kubectl(t, ns, "scale", "rc", "nginx", "--replicas=3")
	c.waitRCStatus(t, ns, "nginx", 3, 3, 3)
	c.waitEvent(t, ns, rc.UID, "SuccessfulDelete: Deleted pod: nginx-")

	victim := c.podsControlledBy(t, ns, rc.UID)[0].Name
	c.kubectl(t, ns, "label", "pod", victim, "app=debug", "--overwrite")
	c.waitReleased(t, ns, victim)
	var before []string
	for _, p := range c.waitControlled(t, ns, rc.UID, 3) {
		if p.Name == victim {
			t.Fatalf("released pod %s is still controlled", victim)
		}
		before = append(before, p.Name)
	}
	c.waitRCStatus(t, ns, "nginx", 3, 3, 3)
	c.orphanDelete(t, ns, v1.SchemeGroupVersion.WithResource("replicationcontrollers"), "nginx", rc.UID, v1.SchemeGroupVersion.WithResource("pods"))
	c.kubectl(t, ns, "apply", "-f", "testdata/nginx-replicationcontroller.yaml")
	fresh := c.waitRCStatus(t, ns, "nginx", 3, 3, 3)
	var after []string
	for _, p := range c.podsControlledBy(t, ns, fresh.UID) {
		after = append(after, p.Name)
	}
	slices.Sort(before)
	slices.Sort(after)
	if fresh.UID == rc.UID || !slices.Equal(before, after) {
		t.Errorf("new ReplicationController controls %v, want the orphans %v", after, before)
	}
	describe := c.kubectl(t, ns, "describe", "rc", "nginx")
	if !strings.Contains(describe, "3 Running / 0 Waiting") {
		t.Errorf("kubectl describe rc:\n%s", describe)
	}
}
