package disruption

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
)

func TestDisruptedPods(t *testing.T) {
	at := func(ago time.Duration) metav1.Time { return metav1.NewTime(t0.Add(-ago)) }
	cases := []struct {
		name        string
		disrupted   map[string]metav1.Time
		extra       []runtime.Object
		wantKept    []string
		wantHealthy int32
		wantRequeue time.Duration
		wantEvent   string
	}{
		{"a recent eviction is not healthy and is kept until it expires",
			map[string]metav1.Time{"a": at(30 * time.Second)}, nil, []string{"a"}, 2, 90 * time.Second, ""},
		{"the earliest expiry decides the requeue",
			map[string]metav1.Time{"a": at(30 * time.Second), "b": at(100 * time.Second)}, nil, []string{"a", "b"}, 1, 20 * time.Second, ""},
		{"an expired entry is dropped and the pod counts again",
			map[string]metav1.Time{"a": at(3 * time.Minute)}, nil, nil, 3, 0, "Warning NotDeleted Pod was expected by PDB ns/pdb to be deleted"},
		{"an entry of a pod being deleted is dropped",
			map[string]metav1.Time{"z": at(10 * time.Second)}, []runtime.Object{pod("z", nil, deleting)}, nil, 3, 0, ""},
		{"an entry of a pod that is gone is dropped",
			map[string]metav1.Time{"gone": at(10 * time.Second)}, nil, nil, 3, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pdb := budget(intOrPct("1"), nil, func(p *policyv1.PodDisruptionBudget) { p.Status.DisruptedPods = tc.disrupted })
			f := newFixture(t, nil, objects(one(pdb), nPods(3, nil), tc.extra)...)
			res, err := f.c.reconcile(context.Background(), ns+"/pdb")
			if err != nil {
				t.Fatal(err)
			}
			got := f.status(t)
			if len(got.Status.DisruptedPods) != len(tc.wantKept) {
				t.Errorf("disruptedPods %v, want %v", got.Status.DisruptedPods, tc.wantKept)
			}
			for _, name := range tc.wantKept {
				if kept := got.Status.DisruptedPods[name]; !kept.Equal(ptrTime(tc.disrupted[name])) {
					t.Errorf("disruptedPods[%s] = %v, want %v kept", name, got.Status.DisruptedPods[name], tc.disrupted[name])
				}
			}
			if got.Status.CurrentHealthy != tc.wantHealthy || got.Status.DisruptionsAllowed != tc.wantHealthy-1 {
				t.Errorf("currentHealthy %d allowed %d, want %d and %d", got.Status.CurrentHealthy, got.Status.DisruptionsAllowed, tc.wantHealthy, tc.wantHealthy-1)
			}
			if res.RequeueAfter != tc.wantRequeue {
				t.Errorf("requeue after %v, want %v", res.RequeueAfter, tc.wantRequeue)
			}
			if tc.wantEvent != "" {
				f.wantEvent(t, tc.wantEvent)
			}
		})
	}
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

// TestNoWriteWhenCurrent: a status that is already right is not written
// again; a budget whose spec changed (generation) is.
func TestNoWriteWhenCurrent(t *testing.T) {
	f := newFixture(t, nil, objects(one(budget(intOrPct("2"), nil)), nPods(3, nil))...)
	ctx := context.Background()
	if _, err := f.c.reconcile(ctx, ns+"/pdb"); err != nil {
		t.Fatal(err)
	}
	written := f.status(t)
	if err := f.c.pdbs.Update(written); err != nil {
		t.Fatal(err)
	}
	f.client.ClearActions()
	if _, err := f.c.reconcile(ctx, ns+"/pdb"); err != nil {
		t.Fatal(err)
	}
	if n := len(writes(f.client.Actions())); n != 0 {
		t.Errorf("%d status writes for an unchanged budget", n)
	}
	written.Generation++
	if err := f.c.pdbs.Update(written); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.reconcile(ctx, ns+"/pdb"); err != nil {
		t.Fatal(err)
	}
	if got := f.status(t); got.Status.ObservedGeneration != written.Generation {
		t.Errorf("observedGeneration %d, want %d", got.Status.ObservedGeneration, written.Generation)
	}
}

func writes(actions []k8stesting.Action) []k8stesting.Action {
	var out []k8stesting.Action
	for _, a := range actions {
		if a.GetVerb() == "update" || a.GetVerb() == "patch" {
			out = append(out, a)
		}
	}
	return out
}

// TestSyncFailedRecovers: once the missing controller is cached, the next
// sync replaces SyncFailed with the real status.
func TestSyncFailedRecovers(t *testing.T) {
	f := newFixture(t, nil, objects(one(budget(nil, intOrPct("1"))), nPods(2, rsRef))...)
	ctx := context.Background()
	if _, err := f.c.reconcile(ctx, ns+"/pdb"); err == nil {
		t.Fatal("reconcile succeeded without the pods' ReplicaSet")
	}
	st := f.status(t)
	if c := condition(st); c.Reason != policyv1.SyncFailedReason || st.Status.DisruptionsAllowed != 0 {
		t.Fatalf("status %+v, want SyncFailed allowing nothing", st.Status)
	}
	if err := f.c.pdbs.Update(st); err != nil {
		t.Fatal(err)
	}
	rs := replicaSet("rs", "rs-uid", 2, nil)
	if err := f.c.rss.Add(rs); err != nil {
		t.Fatal(err)
	}
	f.c.controllerEvents().OnAdd(rs, false)
	if f.c.queue.Len() != 1 {
		t.Fatalf("%d keys queued, want the budget selecting the ReplicaSet's pods", f.c.queue.Len())
	}
	if key, _ := f.c.queue.Get(); key != ns+"/pdb" {
		t.Fatalf("queued %q, want the budget selecting the ReplicaSet's pods", key)
	}
	if _, err := f.c.reconcile(ctx, ns+"/pdb"); err != nil {
		t.Fatal(err)
	}
	f.check(t, f.status(t), wantStatus{2, 1, 2, 1, policyv1.SufficientPodsReason})
}

// TestPodEventsQueueBudgets: a pod's change that matters queues every
// budget selecting it, before and after a label change; one that does not
// matter queues nothing.
func TestPodEventsQueueBudgets(t *testing.T) {
	other := budget(intOrPct("1"), nil, func(p *policyv1.PodDisruptionBudget) {
		p.Name = "other"
		p.Spec.Selector.MatchLabels = map[string]string{"tier": "db"}
	})
	f := newFixture(t, nil, budget(intOrPct("1"), nil), other)
	h := f.c.podEvents()
	old := pod("a", nil)
	cur := old.DeepCopy()
	cur.ResourceVersion = "2"
	h.OnUpdate(old, cur)
	if n := f.c.queue.Len(); n != 0 {
		t.Errorf("%d budgets queued for an irrelevant change", n)
	}
	cur.Labels = map[string]string{"tier": "db"}
	h.OnUpdate(old, cur)
	got := map[string]bool{}
	for f.c.queue.Len() > 0 {
		k, _ := f.c.queue.Get()
		got[k] = true
		f.c.queue.Done(k)
	}
	if !got[ns+"/pdb"] || !got[ns+"/other"] {
		t.Errorf("queued %v, want both the old and the new budget", got)
	}
}

func disruptionCondition(status v1.ConditionStatus, reason string, ago time.Duration) v1.PodCondition {
	return v1.PodCondition{Type: v1.DisruptionTarget, Status: status, Reason: reason, Message: "evicted",
		LastTransitionTime: metav1.NewTime(t0.Add(-ago))}
}

func TestStaleDisruptionTarget(t *testing.T) {
	cases := []struct {
		name        string
		mutate      func(*v1.Pod)
		wantReset   bool
		wantRequeue time.Duration
	}{
		{"stale after two minutes", func(p *v1.Pod) {
			p.Status.Conditions = append(p.Status.Conditions, disruptionCondition(v1.ConditionTrue, "EvictionByEvictionAPI", 3*time.Minute))
		}, true, 0},
		{"not yet stale", func(p *v1.Pod) {
			p.Status.Conditions = append(p.Status.Conditions, disruptionCondition(v1.ConditionTrue, "EvictionByEvictionAPI", 30*time.Second))
		}, false, 90 * time.Second},
		{"being deleted", func(p *v1.Pod) {
			deleting(p)
			p.Status.Conditions = append(p.Status.Conditions, disruptionCondition(v1.ConditionTrue, "EvictionByEvictionAPI", 3*time.Minute))
		}, false, 0},
		{"set by the kubelet", func(p *v1.Pod) {
			p.Status.Conditions = append(p.Status.Conditions, disruptionCondition(v1.ConditionTrue, v1.PodReasonTerminationByKubelet, 3*time.Minute))
		}, false, 0},
		{"finished pod", func(p *v1.Pod) {
			p.Status.Phase = v1.PodFailed
			p.Status.Conditions = append(p.Status.Conditions, disruptionCondition(v1.ConditionTrue, "EvictionByEvictionAPI", 3*time.Minute))
		}, false, 0},
		{"already False", func(p *v1.Pod) {
			p.Status.Conditions = append(p.Status.Conditions, disruptionCondition(v1.ConditionFalse, "", 3*time.Minute))
		}, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := pod("a", nil, tc.mutate)
			p.Generation = 4
			f := newFixture(t, nil, p)
			if err := f.client.Tracker().Add(p); err != nil {
				t.Fatal(err)
			}
			res, err := f.c.reconcileStalePod(context.Background(), ns+"/a")
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.client.CoreV1().Pods(ns).Get(context.Background(), "a", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			c := disruptionTarget(got)
			reset := c != nil && c.Status == v1.ConditionFalse && c.Reason == "" && c.Message == "" &&
				c.ObservedGeneration == 4 && c.LastTransitionTime.Time.Equal(t0)
			if reset != tc.wantReset || res.RequeueAfter != tc.wantRequeue {
				t.Errorf("condition %+v (reset %v), requeue %v; want reset %v, requeue %v", c, reset, res.RequeueAfter, tc.wantReset, tc.wantRequeue)
			}
			if tc.wantReset && len(got.Status.Conditions) != 2 {
				t.Errorf("conditions %+v, want the Ready condition kept", got.Status.Conditions)
			}
		})
	}
}
