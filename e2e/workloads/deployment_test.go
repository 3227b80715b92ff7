package workloads

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/plugins/builtin/deployment"
	"github.com/keelson/keelson/plugins/builtin/replicaset"
)

// imageHold holds the readiness of pods running given images, like a
// kubelet that cannot pull them.
type imageHold struct {
	mu     sync.Mutex
	images map[string]bool
}

func (h *imageHold) set(images ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.images = map[string]bool{}
	for _, i := range images {
		h.images[i] = true
	}
}

func (h *imageHold) holds(p *v1.Pod) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(p.Spec.Containers) > 0 && h.images[p.Spec.Containers[0].Image]
}

// replicaSetsOf returns the ReplicaSets controlled by the Deployment uid,
// oldest revision first.
func (c *cluster) replicaSetsOf(t *testing.T, namespace string, uid types.UID) []appsv1.ReplicaSet {
	t.Helper()
	list, err := c.client.AppsV1().ReplicaSets(namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []appsv1.ReplicaSet
	for _, rs := range list.Items {
		if ref := metav1.GetControllerOf(&rs); ref != nil && ref.UID == uid {
			out = append(out, rs)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return revisionOf(&out[i]) < revisionOf(&out[j])
	})
	return out
}

func revisionOf(rs *appsv1.ReplicaSet) int {
	var n int
	fmt.Sscan(rs.Annotations["deployment.kubernetes.io/revision"], &n)
	return n
}

func (c *cluster) deployment(t *testing.T, namespace, name string) *appsv1.Deployment {
	t.Helper()
	d, err := c.client.AppsV1().Deployments(namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// rolloutStatus runs `kubectl rollout status`, which waits for the rollout
// to complete and fails when it exceeds its progress deadline.
func (c *cluster) rolloutStatus(t *testing.T, namespace, name string) {
	t.Helper()
	out := c.kubectl(t, namespace, "rollout", "status", "deployment/"+name, "--timeout=2m")
	if !strings.Contains(out, "successfully rolled out") {
		t.Fatalf("rollout status: %s", out)
	}
}

// image returns the image of the first container of the template.
func image(t *v1.PodTemplateSpec) string { return t.Spec.Containers[0].Image }

// TestDeploymentNginx walks the seed's nginx-deployment through chapter
// 3.2.3: create, scale, update the image, history, undo to a revision,
// pause and resume, restart, scale mid-rollout, and adoption of orphaned
// ReplicaSets by a new Deployment.
func TestDeploymentNginx(t *testing.T) {
	c := startCluster(t, replicaset.Name, deployment.Name)
	const ns, name = "web", "nginx-deployment"
	c.namespace(t, ns)
	hold := &imageHold{}
	kubelet := c.readyPods(t, ns, hold.holds)

	c.kubectl(t, ns, "apply", "-f", "testdata/nginx-deployment.yaml")
	c.rolloutStatus(t, ns, name)
	d := c.deployment(t, ns, name)
	rss := c.replicaSetsOf(t, ns, d.UID)
	if len(rss) != 1 || revisionOf(&rss[0]) != 1 || *rss[0].Spec.Replicas != 3 {
		t.Fatalf("after create: replica sets %v", describeRSs(rss))
	}
	hash := rss[0].Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	if rss[0].Name != name+"-"+hash || rss[0].Spec.Selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] != hash {
		t.Errorf("replica set %s (selector %v) is not named and selected by its template hash %q", rss[0].Name, rss[0].Spec.Selector, hash)
	}
	checkAvailable(t, d, 3)
	c.waitEvent(t, ns, d.UID, "ScalingReplicaSet: Scaled up replica set "+rss[0].Name+" from 0 to 3")

	t.Run("scale to 10", func(t *testing.T) {
		c.kubectl(t, ns, "scale", "deployment/"+name, "--replicas=10")
		c.rolloutStatus(t, ns, name)
		checkAvailable(t, c.deployment(t, ns, name), 10)
		c.waitEvent(t, ns, d.UID, "ScalingReplicaSet: Scaled up replica set "+rss[0].Name+" from 3 to 10")
	})

	t.Run("set image rolls within maxSurge and maxUnavailable", func(t *testing.T) {
		hold.set("nginx:1.9.1")
		c.kubectl(t, ns, "set", "image", "deployment/"+name, "nginx=nginx:1.9.1")
		c.kubectl(t, ns, "annotate", "deployment/"+name, "kubernetes.io/change-cause=image updated to 1.9.1")
		// 10 replicas, 25%: at most 13 pods (surge 3 rounds up), at least 8
		// available (unavailable 2 rounds down). With the new pods held
		// unready, the rollout stops at old 8, new 5.
		eventually(t, "rollout stalled at the fenceposts", func() error {
			rss := c.replicaSetsOf(t, ns, d.UID)
			if len(rss) != 2 || *rss[0].Spec.Replicas != 8 || *rss[1].Spec.Replicas != 5 || rss[1].Status.Replicas != 5 {
				return fmt.Errorf("replica sets %v", describeRSs(rss))
			}
			return nil
		})
		hold.set()
		kubelet.Recheck()
		c.rolloutStatus(t, ns, name)
		rss := c.replicaSetsOf(t, ns, d.UID)
		if len(rss) != 2 || *rss[0].Spec.Replicas != 0 || *rss[1].Spec.Replicas != 10 || image(&rss[1].Spec.Template) != "nginx:1.9.1" || revisionOf(&rss[1]) != 2 {
			t.Fatalf("after set image: %v", describeRSs(rss))
		}
		if got := rss[1].Annotations["kubernetes.io/change-cause"]; got != "image updated to 1.9.1" {
			t.Errorf("change-cause on the new replica set = %q", got)
		}
	})

	t.Run("history and undo to revision 2", func(t *testing.T) {
		c.kubectl(t, ns, "set", "image", "deployment/"+name, "nginx=nginx:1.10")
		c.rolloutStatus(t, ns, name)
		hist := c.kubectl(t, ns, "rollout", "history", "deployment/"+name)
		for _, want := range []string{"1         <none>", "2         image updated to 1.9.1", "3 "} {
			if !strings.Contains(hist, want) {
				t.Errorf("rollout history lacks %q:\n%s", want, hist)
			}
		}
		c.kubectl(t, ns, "rollout", "undo", "deployment/"+name, "--to-revision=2")
		c.rolloutStatus(t, ns, name)
		d := c.deployment(t, ns, name)
		if image(&d.Spec.Template) != "nginx:1.9.1" || d.Annotations["deployment.kubernetes.io/revision"] != "4" {
			t.Fatalf("after undo: image %s revision %s", image(&d.Spec.Template), d.Annotations["deployment.kubernetes.io/revision"])
		}
		rss := c.replicaSetsOf(t, ns, d.UID)
		last := rss[len(rss)-1]
		if len(rss) != 3 || image(&last.Spec.Template) != "nginx:1.9.1" || revisionOf(&last) != 4 || last.Annotations["deployment.kubernetes.io/revision-history"] != "2" {
			t.Fatalf("undo did not reuse revision 2's replica set: %v", describeRSs(rss))
		}
		hist = c.kubectl(t, ns, "rollout", "history", "deployment/"+name)
		if strings.Contains(hist, "\n2 ") || !strings.Contains(hist, "4         image updated to 1.9.1") {
			t.Errorf("rollout history after undo:\n%s", hist)
		}
	})

	t.Run("pause holds changes until resume", func(t *testing.T) {
		c.kubectl(t, ns, "rollout", "pause", "deployment/"+name)
		c.kubectl(t, ns, "set", "image", "deployment/"+name, "nginx=nginx:1.11")
		c.kubectl(t, ns, "set", "resources", "deployment/"+name, "-c=nginx", "--limits=cpu=200m,memory=512Mi")
		eventually(t, "paused deployment observed", func() error {
			d := c.deployment(t, ns, name)
			cond := progressingCondition(d)
			if d.Status.ObservedGeneration < d.Generation || cond == nil || cond.Reason != "DeploymentPaused" {
				return fmt.Errorf("generation %d observed %d, progressing %+v", d.Generation, d.Status.ObservedGeneration, cond)
			}
			return nil
		})
		if rss := c.replicaSetsOf(t, ns, d.UID); len(rss) != 3 {
			t.Fatalf("a paused deployment rolled out: %v", describeRSs(rss))
		}
		c.kubectl(t, ns, "rollout", "resume", "deployment/"+name)
		c.rolloutStatus(t, ns, name)
		rss := c.replicaSetsOf(t, ns, d.UID)
		last := rss[len(rss)-1]
		if image(&last.Spec.Template) != "nginx:1.11" || last.Spec.Template.Spec.Containers[0].Resources.Limits.Cpu().String() != "200m" || *last.Spec.Replicas != 10 {
			t.Fatalf("after resume: %v", describeRSs(rss))
		}
	})

	t.Run("scaling mid-rollout is proportional", func(t *testing.T) {
		hold.set("nginx:1.12")
		c.kubectl(t, ns, "set", "image", "deployment/"+name, "nginx=nginx:1.12")
		var oldRS, newRS appsv1.ReplicaSet
		eventually(t, "rollout stalled at the fenceposts", func() error {
			rss := c.replicaSetsOf(t, ns, d.UID)
			oldRS, newRS = rss[len(rss)-2], rss[len(rss)-1]
			if *oldRS.Spec.Replicas != 8 || *newRS.Spec.Replicas != 5 || image(&newRS.Spec.Template) != "nginx:1.12" {
				return fmt.Errorf("replica sets %v", describeRSs(rss))
			}
			return nil
		})
		// 20 replicas allow 25 pods: the 12 added are shared by size against
		// the 13 pods the replica sets were sized for (old 8*25/13 -> 15,
		// new 5*25/13 -> 10), so the rollout goes on where it was; with the
		// new pods still held that is where it stays.
		c.kubectl(t, ns, "scale", "deployment/"+name, "--replicas=20")
		eventually(t, "replica sets scaled proportionally", func() error {
			rss := c.replicaSetsOf(t, ns, d.UID)
			o, n := rss[len(rss)-2], rss[len(rss)-1]
			if o.Name != oldRS.Name || n.Name != newRS.Name || *o.Spec.Replicas != 15 || *n.Spec.Replicas != 10 {
				return fmt.Errorf("replica sets %v", describeRSs(rss))
			}
			return nil
		})
		hold.set()
		kubelet.Recheck()
		c.rolloutStatus(t, ns, name)
		checkAvailable(t, c.deployment(t, ns, name), 20)
	})

	t.Run("restart makes a new revision", func(t *testing.T) {
		before := len(c.replicaSetsOf(t, ns, d.UID))
		c.kubectl(t, ns, "rollout", "restart", "deployment/"+name)
		c.rolloutStatus(t, ns, name)
		rss := c.replicaSetsOf(t, ns, d.UID)
		last := rss[len(rss)-1]
		if len(rss) != before+1 || last.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
			t.Fatalf("after restart: %v", describeRSs(rss))
		}
	})

	t.Run("orphaned replica sets are adopted by a new deployment", func(t *testing.T) {
		before := c.replicaSetsOf(t, ns, d.UID)
		c.orphanDelete(t, ns, appsv1.SchemeGroupVersion.WithResource("deployments"), name, d.UID, appsv1.SchemeGroupVersion.WithResource("replicasets"))
		c.kubectl(t, ns, "apply", "-f", "testdata/nginx-deployment.yaml")
		c.rolloutStatus(t, ns, name)
		fresh := c.deployment(t, ns, name)
		after := c.replicaSetsOf(t, ns, fresh.UID)
		if len(after) != len(before) {
			t.Fatalf("new deployment controls %v, want the %d orphans", describeRSs(after), len(before))
		}
		newest := after[len(after)-1]
		if image(&newest.Spec.Template) != "nginx:1.7.9" || newest.Name != before[0].Name {
			t.Errorf("the revision-1 template did not reuse its replica set: %v", describeRSs(after))
		}
	})

	describe := c.kubectl(t, ns, "describe", "deployment", name)
	for _, want := range []string{"ScalingReplicaSet", "deployment-controller", "NewReplicaSetAvailable", "MinimumReplicasAvailable"} {
		if !strings.Contains(describe, want) {
			t.Errorf("kubectl describe deployment lacks %q:\n%s", want, describe)
		}
	}
}

func progressingCondition(d *appsv1.Deployment) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == appsv1.DeploymentProgressing {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

func checkAvailable(t *testing.T, d *appsv1.Deployment, n int32) {
	t.Helper()
	st := d.Status
	if st.Replicas != n || st.UpdatedReplicas != n || st.ReadyReplicas != n || st.AvailableReplicas != n || st.UnavailableReplicas != 0 {
		t.Errorf("deployment status %+v, want %d replicas all updated and available", st, n)
	}
	for _, c := range st.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status != v1.ConditionTrue {
			t.Errorf("Available condition %+v", c)
		}
	}
}

func describeRSs(rss []appsv1.ReplicaSet) string {
	var parts []string
	for _, rs := range rss {
		parts = append(parts, fmt.Sprintf("%s(rev %d, %s, spec %d, status %d/%d ready, %d available)",
			rs.Name, revisionOf(&rs), image(&rs.Spec.Template), *rs.Spec.Replicas, rs.Status.Replicas, rs.Status.ReadyReplicas, rs.Status.AvailableReplicas))
	}
	return strings.Join(parts, "; ")
}
