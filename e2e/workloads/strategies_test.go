package workloads

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/keelson/keelson/plugins/builtin/deployment"
	"github.com/keelson/keelson/plugins/builtin/replicaset"
)

// deploymentYAML is a Deployment named name of image with extra spec
// lines (indented two spaces).
func deploymentYAML(name, image string, replicas int, spec ...string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
spec:
  replicas: %d
  selector:
    matchLabels:
      app: %s
%s
  template:
    metadata:
      labels:
        app: %s
    spec:
      containers:
      - name: app
        image: %s
`, name, replicas, name, strings.Join(spec, "\n"), name, image)
}

// apply applies manifest in namespace, failing the test if kubectl does.
func (c *cluster) apply(t *testing.T, namespace, manifest string) {
	t.Helper()
	if r := c.KubectlIn(t, manifest, "-n", namespace, "apply", "-f", "-"); r.ExitCode != 0 {
		t.Fatalf("kubectl apply:\n%s", r)
	}
}

// overlapWatch follows the ReplicaSets of a namespace and records whether
// two of them ever had pods (or were asked for pods) at the same time. The
// watch delivers changes in the order they happened, so replaying them
// gives every state the namespace went through.
type overlapWatch struct {
	mu      sync.Mutex
	state   map[string][2]int32 // name -> spec, status replicas
	overlap string
}

func (c *cluster) watchOverlap(t *testing.T, namespace string) *overlapWatch {
	t.Helper()
	w, err := c.client.AppsV1().ReplicaSets(namespace).Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	o := &overlapWatch{state: map[string][2]int32{}}
	go func() {
		for ev := range w.ResultChan() {
			rs, ok := ev.Object.(*appsv1.ReplicaSet)
			if !ok {
				continue
			}
			o.mu.Lock()
			if ev.Type == watch.Deleted {
				delete(o.state, rs.Name)
			} else {
				o.state[rs.Name] = [2]int32{*rs.Spec.Replicas, rs.Status.Replicas}
			}
			busy := 0
			for _, s := range o.state {
				if s[0] > 0 || s[1] > 0 {
					busy++
				}
			}
			if busy > 1 && o.overlap == "" {
				o.overlap = fmt.Sprintf("%v", o.state)
			}
			o.mu.Unlock()
		}
	}()
	return o
}

func (o *overlapWatch) seen() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.overlap
}

// TestDeploymentStrategies checks what a rollout guarantees beyond the
// walkthrough: Recreate never runs old and new pods together; a rollout
// that cannot progress is reported failed after progressDeadlineSeconds
// and recovers; revisionHistoryLimit bounds the old ReplicaSets kept.
func TestDeploymentStrategies(t *testing.T) {
	c := startCluster(t, replicaset.Name, deployment.Name)
	const ns = "strategies"
	c.namespace(t, ns)
	hold := &imageHold{}
	kubelet := c.readyPods(t, ns, hold.holds)

	t.Run("recreate", func(t *testing.T) {
		c.apply(t, ns, deploymentYAML("recreate", "busybox:1.36", 3, "  strategy:\n    type: Recreate"))
		c.rolloutStatus(t, ns, "recreate")
		o := c.watchOverlap(t, ns)
		c.kubectl(t, ns, "set", "image", "deployment/recreate", "app=busybox:1.37")
		c.rolloutStatus(t, ns, "recreate")
		d := c.deployment(t, ns, "recreate")
		rss := c.replicaSetsOf(t, ns, d.UID)
		if len(rss) != 2 || *rss[0].Spec.Replicas != 0 || *rss[1].Spec.Replicas != 3 {
			t.Fatalf("after the update: %v", describeRSs(rss))
		}
		if ov := o.seen(); ov != "" {
			t.Errorf("old and new replica sets ran together: %s", ov)
		}
	})

	t.Run("progress deadline exceeded", func(t *testing.T) {
		hold.set("busybox:bad")
		c.apply(t, ns, deploymentYAML("stuck", "busybox:bad", 2, "  progressDeadlineSeconds: 5"))
		r := c.Kubectl(t, "-n", ns, "rollout", "status", "deployment/stuck", "--timeout=2m")
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "exceeded its progress deadline") {
			t.Fatalf("rollout status of a stuck rollout: %s", r)
		}
		cond := progressingCondition(c.deployment(t, ns, "stuck"))
		if cond == nil || cond.Status != v1.ConditionFalse || cond.Reason != "ProgressDeadlineExceeded" {
			t.Fatalf("Progressing condition %+v", cond)
		}
		hold.set()
		kubelet.Recheck()
		c.rolloutStatus(t, ns, "stuck")
		if cond := progressingCondition(c.deployment(t, ns, "stuck")); cond.Reason != "NewReplicaSetAvailable" {
			t.Errorf("Progressing condition after recovery %+v", cond)
		}
	})

	t.Run("revision history limit", func(t *testing.T) {
		c.apply(t, ns, deploymentYAML("history", "busybox:1", 1, "  revisionHistoryLimit: 1"))
		c.rolloutStatus(t, ns, "history")
		for _, tag := range []string{"2", "3", "4"} {
			c.kubectl(t, ns, "set", "image", "deployment/history", "app=busybox:"+tag)
			c.rolloutStatus(t, ns, "history")
		}
		d := c.deployment(t, ns, "history")
		eventually(t, "old revisions cleaned up", func() error {
			rss := c.replicaSetsOf(t, ns, d.UID)
			if len(rss) != 2 || revisionOf(&rss[0]) != 3 || revisionOf(&rss[1]) != 4 {
				return fmt.Errorf("replica sets %v", describeRSs(rss))
			}
			return nil
		})
	})
}
