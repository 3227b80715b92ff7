package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/keelson/keelson/e2e/nodeagent"
)

// guarded is a 3-replica Deployment with a PodDisruptionBudget of
// minAvailable 2.
const guarded = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: guarded
spec:
  replicas: 3
  selector:
    matchLabels: {app: guarded}
  template:
    metadata:
      labels: {app: guarded}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: sleep
        image: ` + nodeagent.BusyboxImage + `
        command: [sleep, "3600"]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: guarded
spec:
  minAvailable: 2
  selector:
    matchLabels: {app: guarded}
`

// TestDrain runs `kubectl drain` of an agent on one server (every
// built-in plugin, the disruption plugin among them) and two agents: the
// drained node's pods are evicted one at a time, each only once the
// budget allows it (the replacement of the previous one ready on the
// other node), so at most one of the three pods is ever unavailable, and
// drain finishes with all three running elsewhere.
func TestDrain(t *testing.T) {
	c := startClusterOf(t, 1)
	ns := c.namespace(t, "drain")
	c.kubectl(t).MustIn(t, guarded, "apply", "-n", ns, "-f", "-")
	pods := c.waitPods(t, ns, "app=guarded", "3 running", func(pods []v1.Pod) bool {
		per := byNode(pods)
		return per["a1"]+per["a2"] == 3
	})
	// The node with more pods has at least two: its second eviction has
	// to wait for the budget.
	per := byNode(pods)
	victim, survivor := "a1", "a2"
	if per["a2"] > per["a1"] {
		victim, survivor = "a2", "a1"
	}
	t.Logf("pods per node %v; draining %s", per, victim)
	c.waitBudget(t, ns, "guarded", 3)

	watched := c.watchHealthy(t, ns, "app=guarded")
	r := c.kubectl(t).RunIn(t, "", "drain", victim, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=100s")
	if r.ExitCode != 0 {
		t.Fatalf("kubectl drain failed:\n%s", r)
	}
	t.Cleanup(func() { c.kubectl(t).RunIn(t, "", "uncordon", victim) })
	t.Logf("kubectl drain:\n%s%s", r.Stdout, r.Stderr)
	if !strings.Contains(r.Stdout, "node/"+victim+" drained") {
		t.Errorf("drain output:\n%s", r)
	}
	// kubectl evicts the node's pods at once, so the second eviction is
	// usually refused (429) until the first one's replacement is ready;
	// when the API server happens to take it after that, there is no
	// refusal to see. Either way the healthy count below must never drop
	// under minAvailable.
	if !strings.Contains(r.Stderr, "Cannot evict pod as it would violate the pod's disruption budget") {
		t.Logf("drain evicting %d pods was never refused by the budget (the evictions did not overlap)", per[victim])
	}
	c.waitPods(t, ns, "app=guarded", "3 running on "+survivor, func(pods []v1.Pod) bool {
		return byNode(pods)[survivor] == 3 && len(pods) == 3
	})
	c.waitBudget(t, ns, "guarded", 3)
	if least, seen := watched.stop(t); least < 2 {
		t.Errorf("only %d of 3 pods were healthy at one point during the drain, want at least 2 (minAvailable); states seen: %v", least, seen)
	} else {
		t.Logf("at least %d pods healthy throughout the drain; healthy after each pod event: %v", least, seen)
	}
}

// waitBudget waits for the budget's status of healthy ready pods out of 3
// expected with minAvailable 2, at its current generation.
func (c *testCluster) waitBudget(t *testing.T, ns, name string, healthy int32) {
	t.Helper()
	eventually(t, fmt.Sprintf("PodDisruptionBudget %s with %d healthy", name, healthy), func() (bool, string) {
		pdb, err := c.kube(t).PolicyV1().PodDisruptionBudgets(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		st := pdb.Status
		cond := meta.FindStatusCondition(st.Conditions, policyv1.DisruptionAllowedCondition)
		ok := st.ObservedGeneration == pdb.Generation && st.CurrentHealthy == healthy && st.DesiredHealthy == 2 &&
			st.ExpectedPods == 3 && st.DisruptionsAllowed == max(healthy-2, 0) && len(st.DisruptedPods) == 0 &&
			cond != nil && (cond.Status == metav1.ConditionTrue) == (healthy > 2)
		return ok, fmt.Sprintf("status %+v at generation %d", st, pdb.Generation)
	})
}

// healthWatch follows the pods of a selector and records the fewest that
// were ready and not being deleted at any point.
type healthWatch struct {
	w     watch.Interface
	done  chan struct{}
	mu    sync.Mutex
	least int
	seen  []string
	// stopped is set by stop; a watch that ends before missed events.
	stopped, endedEarly bool
}

func (c *testCluster) watchHealthy(t *testing.T, ns, selector string) *healthWatch {
	t.Helper()
	ctx := context.Background()
	list, err := c.kube(t).CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.kube(t).CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	h := &healthWatch{w: w, done: make(chan struct{}), least: len(list.Items)}
	state := map[string]*v1.Pod{}
	for i := range list.Items {
		state[list.Items[i].Name] = &list.Items[i]
	}
	go func() {
		defer close(h.done)
		defer func() {
			h.mu.Lock()
			h.endedEarly = !h.stopped
			h.mu.Unlock()
		}()
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*v1.Pod)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted {
				delete(state, p.Name)
			} else {
				state[p.Name] = p
			}
			h.record(state)
		}
	}()
	return h
}

func (h *healthWatch) record(state map[string]*v1.Pod) {
	healthy := 0
	for _, p := range state {
		if running(p) {
			healthy++
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.least = min(h.least, healthy)
	h.seen = append(h.seen, fmt.Sprint(healthy))
}

// stop ends the watch and returns the fewest healthy pods seen and the
// count after every event; it fails the test if the watch had ended by
// itself (events may have been missed).
func (h *healthWatch) stop(t *testing.T) (int, []string) {
	t.Helper()
	h.mu.Lock()
	h.stopped = true
	h.mu.Unlock()
	h.w.Stop()
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.endedEarly {
		t.Error("the pod watch ended before the drain did: its count may have missed events")
	}
	return h.least, h.seen
}
