package workloads

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/builtin/deployment"
	"github.com/keelson/keelson/plugins/builtin/disruption"
	"github.com/keelson/keelson/plugins/builtin/podgc"
	"github.com/keelson/keelson/plugins/builtin/replicaset"
)

// TestDisruptionAndPodGC runs the disruption and podgc plugins (with the
// replicaset and deployment plugins) against a real server: budgets'
// status for integer, percentage and maxUnavailable budgets over
// Deployments and a custom resource's scale subresource, evictions granted
// and refused by kube-apiserver on that status, and pods collected when
// their node goes or too many finished pods pile up.
func TestDisruptionAndPodGC(t *testing.T) {
	c := startClusterWith(t, []string{"--plugin-config", `podgc={"terminatedPodThreshold":2}`},
		replicaset.Name, deployment.Name, disruption.Name, podgc.Name)
	t.Run("EvictionWithinBudget", c.testEvictionWithinBudget)
	t.Run("MaxUnavailableFollowsScale", c.testMaxUnavailableFollowsScale)
	t.Run("CustomResourceScale", c.testCustomResourceScale)
	t.Run("PodOfDeletedNode", c.testPodOfDeletedNode)
	t.Run("TerminatedPodThreshold", c.testTerminatedPodThreshold)
}

// budgetStatus is what the tests expect of a budget's status.
type budgetStatus struct {
	healthy, desired, expected, allowed int32
}

// waitBudget waits until the budget's status, for its current generation,
// has the given counts and the matching DisruptionAllowed condition.
func (c *cluster) waitBudget(t *testing.T, ns, name string, want budgetStatus) *policyv1.PodDisruptionBudget {
	t.Helper()
	var pdb *policyv1.PodDisruptionBudget
	eventually(t, fmt.Sprintf("PodDisruptionBudget %s/%s status %+v", ns, name, want), func() error {
		var err error
		pdb, err = c.client.PolicyV1().PodDisruptionBudgets(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := pdb.Status
		cond := meta.FindStatusCondition(st.Conditions, policyv1.DisruptionAllowedCondition)
		wantReason := policyv1.InsufficientPodsReason
		if want.allowed > 0 {
			wantReason = policyv1.SufficientPodsReason
		}
		if st.ObservedGeneration != pdb.Generation || st.CurrentHealthy != want.healthy || st.DesiredHealthy != want.desired ||
			st.ExpectedPods != want.expected || st.DisruptionsAllowed != want.allowed || cond == nil || cond.Reason != wantReason {
			return fmt.Errorf("status %+v at generation %d", st, pdb.Generation)
		}
		return nil
	})
	return pdb
}

const webBudget = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: "nginx:1.0"}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
`

// testEvictionWithinBudget: with minAvailable 2 of 3, one eviction is
// granted, a second one refused (429) while the replacement is not ready,
// and granted again once it is.
func (c *cluster) testEvictionWithinBudget(t *testing.T) {
	ns := "pdb-evict"
	c.namespace(t, ns)
	var holdNew atomic.Bool
	first := sync.Map{}
	running := c.readyPods(t, ns, func(p *v1.Pod) bool {
		_, known := first.Load(p.Name)
		return holdNew.Load() && !known
	})
	c.KubectlIn(t, webBudget, "apply", "-n", ns, "-f", "-")
	c.waitBudget(t, ns, "web", budgetStatus{healthy: 3, desired: 2, expected: 3, allowed: 1})
	ps := c.podsSelected(t, ns, "app=web")
	for _, p := range ps {
		first.Store(p.Name, true)
	}
	holdNew.Store(true)

	ctx := context.Background()
	evict := func(name string) error {
		return c.client.CoreV1().Pods(ns).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
	}
	if err := evict(ps[0].Name); err != nil {
		t.Fatalf("evicting %s within the budget: %v", ps[0].Name, err)
	}
	err := evict(ps[1].Name)
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("second eviction: %v, want 429 Too Many Requests", err)
	}
	if !strings.Contains(err.Error(), "Cannot evict pod as it would violate the pod's disruption budget") {
		t.Errorf("second eviction refused with %q", err)
	}
	// The replacement exists but is not ready: two healthy of three.
	pdb := c.waitBudget(t, ns, "web", budgetStatus{healthy: 2, desired: 2, expected: 3, allowed: 0})
	if len(pdb.Status.DisruptedPods) != 0 {
		t.Errorf("disruptedPods %v after the evicted pod is gone", pdb.Status.DisruptedPods)
	}
	holdNew.Store(false)
	running.Recheck()
	c.waitBudget(t, ns, "web", budgetStatus{healthy: 3, desired: 2, expected: 3, allowed: 1})
	if err := evict(ps[1].Name); err != nil {
		t.Fatalf("evicting %s once the replacement is ready: %v", ps[1].Name, err)
	}
}

// podsSelected lists the pods of ns matching selector that are not being
// deleted, by name.
func (c *cluster) podsSelected(t *testing.T, ns, selector string) []v1.Pod {
	t.Helper()
	l, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b v1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out
}

const apiBudget = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 4
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "api:1.0"}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: api}
spec:
  maxUnavailable: 50%
  selector: {matchLabels: {app: api}}
`

// testMaxUnavailableFollowsScale: a maxUnavailable percentage is taken of
// the Deployment's replicas, and follows kubectl scale.
func (c *cluster) testMaxUnavailableFollowsScale(t *testing.T) {
	ns := "pdb-scale"
	c.namespace(t, ns)
	c.readyPods(t, ns, nil)
	c.KubectlIn(t, apiBudget, "apply", "-n", ns, "-f", "-")
	c.waitBudget(t, ns, "api", budgetStatus{healthy: 4, desired: 2, expected: 4, allowed: 2})
	c.kubectl(t, ns, "scale", "deployment/api", "--replicas=3")
	// 50% of 3 rounds up to 2 unavailable: 1 must stay healthy.
	c.waitBudget(t, ns, "api", budgetStatus{healthy: 3, desired: 1, expected: 3, allowed: 2})
	if out := c.kubectl(t, ns, "get", "pdb", "api"); !strings.Contains(out, "50%") {
		t.Errorf("kubectl get pdb:\n%s", out)
	}
}

const cronTabCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: crontabs.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

// testCustomResourceScale: pods controlled by a custom resource count
// through its /scale subresource; the CRD is created while the plugin runs.
func (c *cluster) testCustomResourceScale(t *testing.T) {
	ns := "pdb-custom"
	c.namespace(t, ns)
	c.readyPods(t, ns, nil)
	c.KubectlIn(t, cronTabCRD, "apply", "-f", "-")
	c.MustKubectl(t, "wait", "--for=condition=established", "--timeout=2m", "crd/crontabs.example.com")
	c.KubectlIn(t, "apiVersion: example.com/v1\nkind: CronTab\nmetadata: {name: tab}\nspec: {replicas: 3}\n", "apply", "-n", ns, "-f", "-")
	uid := types.UID(strings.TrimSpace(c.kubectl(t, ns, "get", "crontab", "tab", "-o", "jsonpath={.metadata.uid}")))
	for i := range 2 {
		p := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("tab-%d", i), Labels: map[string]string{"app": "tab"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "example.com/v1", Kind: "CronTab", Name: "tab", UID: uid, Controller: ptr.To(true)}}},
			Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "tab:1"}}},
		}
		if _, err := c.client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.KubectlIn(t, "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: tab}\nspec:\n  maxUnavailable: 1\n  selector: {matchLabels: {app: tab}}\n",
		"apply", "-n", ns, "-f", "-")
	// Three expected (the scale), two healthy: one unavailable already.
	c.waitBudget(t, ns, "tab", budgetStatus{healthy: 2, desired: 2, expected: 3, allowed: 0})
}

// testPodOfDeletedNode: a pod bound to a Node that is then deleted is
// failed with DisruptionTarget (DeletionByPodGC) and deleted.
func (c *cluster) testPodOfDeletedNode(t *testing.T) {
	ns := "podgc-orphan"
	c.namespace(t, ns)
	ctx := context.Background()
	n, err := c.client.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ghost"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.client.CoreV1().Pods(ns).Create(ctx, &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "stranded"},
		Spec:       v1.PodSpec{NodeName: n.Name, Containers: []v1.Container{{Name: "c", Image: "app:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=stranded", ResourceVersion: p.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := c.client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// 20 s passes and a 40 s quarantine: wait longer than eventually does.
	deadline := time.After(2 * waitTimeout)
	var failed *v1.Pod
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed before the pod was deleted")
			}
			got, _ := ev.Object.(*v1.Pod)
			if ev.Type == watch.Modified && got.Status.Phase == v1.PodFailed {
				failed = got
			}
			if ev.Type != watch.Deleted {
				continue
			}
			if failed == nil {
				t.Fatal("pod deleted without being set Failed first")
			}
			for _, cond := range failed.Status.Conditions {
				if cond.Type == v1.DisruptionTarget && cond.Status == v1.ConditionTrue && cond.Reason == "DeletionByPodGC" {
					return
				}
			}
			t.Fatalf("conditions before deletion %+v, want DisruptionTarget DeletionByPodGC", failed.Status.Conditions)
		case <-deadline:
			t.Fatalf("pod of the deleted node still there after %s", 2*waitTimeout)
		}
	}
}

// testTerminatedPodThreshold: with terminatedPodThreshold 2, the oldest
// finished pods beyond two are deleted; running ones stay.
func (c *cluster) testTerminatedPodThreshold(t *testing.T) {
	ns := "podgc-finished"
	c.namespace(t, ns)
	ctx := context.Background()
	for i := range 4 {
		name := fmt.Sprintf("done-%d", i)
		p, err := c.client.CoreV1().Pods(ns).Create(ctx, &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       v1.PodSpec{RestartPolicy: v1.RestartPolicyNever, Containers: []v1.Container{{Name: "c", Image: "job:1"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = v1.PodSucceeded
		if _, err := c.client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Creation times have a resolution of a second; a tie is broken by
	// name, which orders these pods the same way.
	eventually(t, "the two oldest finished pods deleted", func() error {
		var names []string
		for _, p := range c.podsSelected(t, ns, "") {
			names = append(names, p.Name)
		}
		if !slices.Equal(names, []string{"done-2", "done-3"}) {
			return fmt.Errorf("pods %v", names)
		}
		return nil
	})
}
