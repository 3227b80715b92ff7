package workloads

import (
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/e2e/podready"
	"github.com/keelson/keelson/plugins/builtin/replicaset"
)

// TestReplicaSetFrontend walks the seed's frontend ReplicaSet through what
// chapter 3.2.1 describes: create, scale, scale down (unready pods go
// first), isolate a pod by relabelling it, delete leaving the pods, and
// have a new ReplicaSet adopt them.
func TestReplicaSetFrontend(t *testing.T) {
	c := startCluster(t, replicaset.Name)
	const ns = "frontend"
	c.namespace(t, ns)
	var holding atomic.Bool
	c.readyPods(t, ns, func(*v1.Pod) bool { return holding.Load() })

	c.kubectl(t, ns, "apply", "-f", "testdata/frontend-replicaset.yaml")
	rs := c.waitReplicaSetStatus(t, ns, "frontend", 3, 3, 3)
	if rs.Status.FullyLabeledReplicas != 3 {
		t.Errorf("fullyLabeledReplicas = %d, want 3", rs.Status.FullyLabeledReplicas)
	}
	pods := c.podsControlledBy(t, ns, rs.UID)
	if len(pods) != 3 {
		t.Fatalf("%d pods controlled by frontend, want 3", len(pods))
	}
	checkControllerRefs(t, pods, "ReplicaSet", "frontend")
	for _, p := range pods {
		if !strings.HasPrefix(p.Name, "frontend-") || p.Labels["app"] != "guestbook" || p.Spec.Containers[0].Image != "gcr.io/google_samples/gb-frontend:v3" {
			t.Errorf("pod %s labels %v image %s: not made from the template", p.Name, p.Labels, p.Spec.Containers[0].Image)
		}
	}
	c.waitEvent(t, ns, rs.UID, "SuccessfulCreate: Created pod: frontend-")
	describe := c.kubectl(t, ns, "describe", "rs", "frontend")
	for _, want := range []string{"3 current / 3 desired", "3 Running / 0 Waiting / 0 Succeeded / 0 Failed", "SuccessfulCreate", "replicaset-controller"} {
		if !strings.Contains(describe, want) {
			t.Errorf("kubectl describe rs frontend lacks %q:\n%s", want, describe)
		}
	}

	t.Run("scale to 10", func(t *testing.T) {
		c.kubectl(t, ns, "scale", "rs", "frontend", "--replicas=10")
		c.waitReplicaSetStatus(t, ns, "frontend", 10, 10, 10)
	})

	t.Run("scale down deletes unready pods first", func(t *testing.T) {
		holding.Store(true)
		c.kubectl(t, ns, "scale", "rs", "frontend", "--replicas=12")
		c.waitReplicaSetStatus(t, ns, "frontend", 12, 10, 10)
		var unready []string
		for _, p := range c.podsControlledBy(t, ns, rs.UID) {
			if !podready.IsReady(&p) {
				unready = append(unready, p.Name)
			}
		}
		if len(unready) != 2 {
			t.Fatalf("unready pods %v, want the 2 new ones", unready)
		}
		c.kubectl(t, ns, "scale", "rs", "frontend", "--replicas=10")
		c.waitReplicaSetStatus(t, ns, "frontend", 10, 10, 10)
		holding.Store(false)
		for _, p := range c.podsControlledBy(t, ns, rs.UID) {
			if slices.Contains(unready, p.Name) {
				t.Errorf("unready pod %s survived the scale-down while ready ones were deleted", p.Name)
			}
		}
		c.waitEvent(t, ns, rs.UID, "SuccessfulDelete: Deleted pod: "+unready[0])
	})

	t.Run("relabelled pod is released and replaced", func(t *testing.T) {
		victim := c.podsControlledBy(t, ns, rs.UID)[0].Name
		c.kubectl(t, ns, "label", "pod", victim, "tier=debug", "--overwrite")
		c.waitReleased(t, ns, victim)
		for _, p := range c.waitControlled(t, ns, rs.UID, 10) {
			if p.Name == victim {
				t.Errorf("released pod %s is still controlled", victim)
			}
		}
		c.waitReplicaSetStatus(t, ns, "frontend", 10, 10, 10)
	})

	t.Run("orphaned pods are adopted by a new ReplicaSet", func(t *testing.T) {
		c.kubectl(t, ns, "scale", "rs", "frontend", "--replicas=3")
		var before []string
		for _, p := range c.waitControlled(t, ns, rs.UID, 3) {
			before = append(before, p.Name)
		}
		c.waitReplicaSetStatus(t, ns, "frontend", 3, 3, 3)
		c.orphanDelete(t, ns, appsv1.SchemeGroupVersion.WithResource("replicasets"), "frontend", rs.UID, v1.SchemeGroupVersion.WithResource("pods"))
		c.kubectl(t, ns, "apply", "-f", "testdata/frontend-replicaset.yaml")
		fresh := c.waitReplicaSetStatus(t, ns, "frontend", 3, 3, 3)
		if fresh.UID == rs.UID {
			t.Fatal("the ReplicaSet was not re-created")
		}
		var after []string
		for _, p := range c.podsControlledBy(t, ns, fresh.UID) {
			after = append(after, p.Name)
		}
		slices.Sort(before)
		slices.Sort(after)
		if !slices.Equal(before, after) {
			t.Errorf("new ReplicaSet controls %v, want the orphans %v", after, before)
		}
		for _, e := range c.eventsOf(t, ns, fresh.UID) {
			if strings.HasPrefix(e, "SuccessfulCreate") {
				t.Errorf("the new ReplicaSet created a pod (%s) instead of adopting", e)
			}
		}
	})
}
