package workloads

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/plugins/builtin/daemonset"
	"github.com/keelson/keelson/plugins/builtin/statefulset"
)

const webStatefulSet = `
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: "nginx:1.0"}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Mi}}
`

// TestStatefulSet runs the statefulset plugin against a real server, with
// pods marked ready by the test (no nodes): ordered start, claims per
// ordinal, a deleted pod recreated under its name, kubectl scale, and a
// rolling update that kubectl rollout status, history and undo follow.
func TestStatefulSet(t *testing.T) {
	c := startCluster(t, statefulset.Name)
	ns := "sts"
	c.namespace(t, ns)
	var holdWeb0 atomic.Bool
	holdWeb0.Store(true)
	running := c.readyPods(t, ns, func(p *v1.Pod) bool { return p.Name == "web-0" && holdWeb0.Load() })
	c.KubectlIn(t, webStatefulSet, "apply", "-n", ns, "-f", "-")

	ctx := context.Background()
	eventually(t, "web-0 created", func() error {
		_, err := c.client.CoreV1().Pods(ns).Get(ctx, "web-0", metav1.GetOptions{})
		return err
	})
	// OrderedReady: nothing beyond web-0 while it is not ready.
	for range 10 {
		if _, err := c.client.CoreV1().Pods(ns).Get(ctx, "web-1", metav1.GetOptions{}); err == nil {
			t.Fatal("web-1 created while web-0 is not ready")
		}
		time.Sleep(200 * time.Millisecond)
	}
	holdWeb0.Store(false)
	running.Recheck()
	c.kubectl(t, ns, "rollout", "status", "statefulset/web", "--timeout=2m")
	pods := map[string]v1.Pod{}
	for i := range 3 {
		name := fmt.Sprintf("web-%d", i)
		p, err := c.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Spec.Hostname != name || p.Spec.Subdomain != "nginx" || p.Labels["statefulset.kubernetes.io/pod-name"] != name ||
			p.Labels["apps.kubernetes.io/pod-index"] != fmt.Sprint(i) {
			t.Errorf("pod %s identity: hostname %q subdomain %q labels %v", name, p.Spec.Hostname, p.Spec.Subdomain, p.Labels)
		}
		if _, err := c.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "www-"+name, metav1.GetOptions{}); err != nil {
			t.Errorf("claim of %s: %v", name, err)
		}
		pods[name] = *p
	}

	// A deleted pod comes back under the same name.
	c.kubectl(t, ns, "delete", "pod", "web-1", "--wait=false")
	eventually(t, "web-1 recreated", func() error {
		p, err := c.client.CoreV1().Pods(ns).Get(ctx, "web-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.UID == pods["web-1"].UID {
			return fmt.Errorf("still the old pod")
		}
		return nil
	})

	// Scale down: web-2 goes, its claim stays (Retain).
	c.kubectl(t, ns, "scale", "statefulset/web", "--replicas=2")
	eventually(t, "web-2 removed", func() error {
		if _, err := c.client.CoreV1().Pods(ns).Get(ctx, "web-2", metav1.GetOptions{}); err == nil {
			return fmt.Errorf("web-2 still exists")
		}
		return nil
	})
	if _, err := c.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "www-web-2", metav1.GetOptions{}); err != nil {
		t.Errorf("claim of the removed ordinal: %v", err)
	}

	// Rolling update, history, undo.
	c.kubectl(t, ns, "set", "image", "statefulset/web", "nginx=nginx:2.0")
	c.kubectl(t, ns, "rollout", "status", "statefulset/web", "--timeout=2m")
	c.expectImages(t, ns, "app=web", "nginx:2.0", 2)
	if h := c.kubectl(t, ns, "rollout", "history", "statefulset/web"); !strings.Contains(h, "1 ") || !strings.Contains(h, "2 ") {
		t.Errorf("rollout history:\n%s", h)
	}
	c.kubectl(t, ns, "rollout", "undo", "statefulset/web")
	c.kubectl(t, ns, "rollout", "status", "statefulset/web", "--timeout=2m")
	c.expectImages(t, ns, "app=web", "nginx:1.0", 2)
	if out := c.kubectl(t, ns, "get", "events", "--field-selector", "involvedObject.name=web"); !strings.Contains(out, "SuccessfulCreate") || !strings.Contains(out, "SuccessfulDelete") {
		t.Errorf("events of web:\n%s", out)
	}
}

// expectImages waits until exactly n pods selected by selector exist and
// all run image.
func (c *cluster) expectImages(t *testing.T, ns, selector, image string, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d pods %s at %s", n, selector, image), func() error {
		l, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		var got []string
		ok := 0
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil {
				got = append(got, p.Name+"="+p.Spec.Containers[0].Image)
				if p.Spec.Containers[0].Image == image {
					ok++
				}
			}
		}
		if ok != n || len(got) != n {
			return fmt.Errorf("pods %v", got)
		}
		return nil
	})
}

const agentDaemonSet = `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: "agent:1.0"}]
`

// TestDaemonSet runs the daemonset plugin against API-created nodes (the
// pods stay unbound, pinned to their node by matchFields affinity; the test
// marks them ready): one pod per untainted node, a node that joins gets
// one, an image update rolls with maxUnavailable 1 and undo rolls back.
func TestDaemonSet(t *testing.T) {
	c := startCluster(t, daemonset.Name)
	ns := "ds"
	c.namespace(t, ns)
	ctx := context.Background()
	mkNode := func(name string, taints ...v1.Taint) {
		n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}, Spec: v1.NodeSpec{Taints: taints}}
		created, err := c.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// kube-apiserver taints a new Node not-ready:NoSchedule, which a
		// DaemonSet does not tolerate (as upstream); the nodelifecycle
		// plugin lifts it once the node reports Ready. This test plays
		// that part for its API-only nodes.
		var kept []v1.Taint
		for _, tn := range created.Spec.Taints {
			if tn.Key != v1.TaintNodeNotReady {
				kept = append(kept, tn)
			}
		}
		created.Spec.Taints = kept
		if _, err := c.client.CoreV1().Nodes().Update(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	mkNode("ds-a")
	mkNode("ds-b")
	mkNode("ds-tainted", v1.Taint{Key: "dedicated", Value: "db", Effect: v1.TaintEffectNoSchedule})
	c.readyPods(t, ns, nil)
	c.KubectlIn(t, agentDaemonSet, "apply", "-n", ns, "-f", "-")
	c.kubectl(t, ns, "rollout", "status", "daemonset/agent", "--timeout=2m")
	c.expectDaemonNodes(t, ns, "ds-a", "ds-b")

	mkNode("ds-c")
	c.expectDaemonNodes(t, ns, "ds-a", "ds-b", "ds-c")

	c.kubectl(t, ns, "set", "image", "daemonset/agent", "agent=agent:2.0")
	c.kubectl(t, ns, "rollout", "status", "daemonset/agent", "--timeout=2m")
	c.expectImages(t, ns, "app=agent", "agent:2.0", 3)
	c.kubectl(t, ns, "rollout", "undo", "daemonset/agent")
	c.kubectl(t, ns, "rollout", "status", "daemonset/agent", "--timeout=2m")
	c.expectImages(t, ns, "app=agent", "agent:1.0", 3)
	out := c.kubectl(t, ns, "get", "daemonset", "agent", "-o", "jsonpath={.status.desiredNumberScheduled} {.status.updatedNumberScheduled} {.status.numberAvailable}")
	if out != "3 3 3" {
		t.Errorf("status desired/updated/available %q, want 3 3 3", out)
	}
}

// expectDaemonNodes waits until the daemon's live pods target exactly nodes.
func (c *cluster) expectDaemonNodes(t *testing.T, ns string, nodes ...string) {
	t.Helper()
	want := strings.Join(nodes, ",")
	eventually(t, "daemon pods on "+want, func() error {
		l, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=agent"})
		if err != nil {
			return err
		}
		var got []string
		for _, p := range l.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			a := p.Spec.Affinity
			if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
				return fmt.Errorf("pod %s has no node affinity", p.Name)
			}
			got = append(got, a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields[0].Values[0])
		}
		sortStrings(got)
		if strings.Join(got, ",") != want {
			return fmt.Errorf("pods on %v", got)
		}
		return nil
	})
}

func sortStrings(s []string) { sort.Strings(s) }
