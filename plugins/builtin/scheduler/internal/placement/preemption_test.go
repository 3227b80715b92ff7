package placement

import (
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	policylisters "k8s.io/client-go/listers/policy/v1"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

// preempt runs Schedule, expects a FitError, then Preempt.
func preempt(t *testing.T, e *Engine, w *cluster.Cache, p *v1.Pod) (PreemptOutcome, *FitError) {
	t.Helper()
	_, err := e.Schedule(t.Context(), w, nil, podInfo(p))
	fitErr, ok := err.(*FitError)
	if !ok {
		t.Fatalf("Schedule: %v, want a FitError", err)
	}
	out, err := e.Preempt(t.Context(), w, nil, podInfo(p), fitErr)
	if err != nil {
		t.Fatal(err)
	}
	return out, fitErr
}

func victimNames(p *Preemption) []string {
	var out []string
	for _, v := range p.Victims {
		out = append(out, v.Name)
	}
	slices.Sort(out)
	return out
}

func started(ago time.Duration) func(*v1.Pod) {
	return func(p *v1.Pod) { p.Status.StartTime = &metav1.Time{Time: time.Now().Add(-ago)} }
}

func TestPreemptionChoosesFewestLeastImportantVictims(t *testing.T) {
	e := testEngine(Config{Preemption: true}, Listers{})
	w := world([]*v1.Node{node("a"), node("b")},
		// a: two small low-priority pods, one of which suffices.
		pod("a-low1", onNode("a"), req("1", "1Gi"), withPriority(1), started(time.Hour)),
		pod("a-low2", onNode("a"), req("1", "1Gi"), withPriority(1), started(time.Minute)),
		pod("a-high", onNode("a"), req("2", "1Gi"), withPriority(500)),
		// b: one pod of priority 5 takes everything.
		pod("b-mid", onNode("b"), req("4", "1Gi"), withPriority(5)),
	)
	out, fitErr := preempt(t, e, w, pod("p", req("1", "1Gi"), withPriority(100)))
	if out.Preemption == nil {
		t.Fatalf("no preemption: %s", fitErr.Error())
	}
	// Node a needs one victim of priority 1; b one of priority 5: the
	// lowest highest-priority victim wins, and of a's two equal pods
	// the younger goes.
	if out.Node != "a" || !slices.Equal(victimNames(out.Preemption), []string{"a-low2"}) {
		t.Fatalf("preempt %v on %s, want [a-low2] on a", victimNames(out.Preemption), out.Node)
	}
	if want := "preemption: found a potential placement for pod on node a, preempting 1 victims"; fitErr.Diagnosis.PostFilterMsg != want {
		t.Fatalf("message %q, want %q", fitErr.Diagnosis.PostFilterMsg, want)
	}
}

func TestPreemptionAvoidsBudgetViolations(t *testing.T) {
	guarded := withPodLabels("app", "guarded")
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "guard", Namespace: "ns"},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &intstr.IntOrString{IntVal: 1},
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}},
		},
		Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 0},
	}
	e := testEngine(Config{Preemption: true}, Listers{PDBs: policylisters.NewPodDisruptionBudgetLister(indexer(pdb))})
	w := world([]*v1.Node{node("a"), node("b")},
		pod("a-guarded", onNode("a"), req("4", "1Gi"), withPriority(1), guarded),
		pod("b-free", onNode("b"), req("4", "1Gi"), withPriority(2)))
	out, _ := preempt(t, e, w, pod("p", req("2", "1Gi"), withPriority(100)))
	if out.Preemption == nil || out.Node != "b" || !slices.Equal(victimNames(out.Preemption), []string{"b-free"}) {
		t.Fatalf("preemption %+v, want b-free on b: a's victim is protected by a budget, despite its lower priority", out.Preemption)
	}
}

func TestPreemptionRefusals(t *testing.T) {
	e := testEngine(Config{Preemption: true}, Listers{})
	full := world([]*v1.Node{node("a")}, pod("high", onNode("a"), req("4", "1Gi"), withPriority(1000)))
	out, fitErr := preempt(t, e, full, pod("p", req("1", "1Gi"), withPriority(100)))
	want := "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
	if out.Preemption != nil || !out.ClearNomination || fitErr.Diagnosis.PostFilterMsg != want {
		t.Fatalf("outcome %+v, message %q; want none, %q", out, fitErr.Diagnosis.PostFilterMsg, want)
	}

	low := world([]*v1.Node{node("a")}, pod("low", onNode("a"), req("4", "1Gi"), withPriority(1)))
	never := pod("p", req("1", "1Gi"), withPriority(100), func(p *v1.Pod) {
		p.Spec.PreemptionPolicy = new(v1.PreemptNever)
	})
	out, fitErr = preempt(t, e, low, never)
	if out.Preemption != nil || out.ClearNomination || fitErr.Diagnosis.PostFilterMsg != "preemption: not eligible due to preemptionPolicy=Never." {
		t.Fatalf("PreemptNever: outcome %+v, message %q", out, fitErr.Diagnosis.PostFilterMsg)
	}

	terminating := world([]*v1.Node{node("a")}, pod("low", onNode("a"), req("4", "1Gi"), withPriority(1), func(p *v1.Pod) {
		p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		p.Status.Conditions = []v1.PodCondition{{Type: v1.DisruptionTarget, Status: v1.ConditionTrue, Reason: v1.PodReasonPreemptionByScheduler}}
	}))
	waiting := pod("p", req("1", "1Gi"), withPriority(100), func(p *v1.Pod) { p.Status.NominatedNodeName = "a" })
	out, fitErr = preempt(t, e, terminating, waiting)
	if out.Preemption != nil || out.ClearNomination || fitErr.Diagnosis.PostFilterMsg != "preemption: not eligible due to a terminating pod on the nominated node." {
		t.Fatalf("victim still terminating: outcome %+v, message %q", out, fitErr.Diagnosis.PostFilterMsg)
	}

	// Removing pods cannot help a pod asking for more than the node has.
	out, fitErr = preempt(t, e, low, pod("p", req("8", "1Gi"), withPriority(100)))
	if out.Preemption != nil || fitErr.Diagnosis.PostFilterMsg != "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling." {
		t.Fatalf("unresolvable: outcome %+v, message %q", out, fitErr.Diagnosis.PostFilterMsg)
	}
}

func TestPreemptionKeepsWhatStillFits(t *testing.T) {
	e := testEngine(Config{Preemption: true}, Listers{})
	w := world([]*v1.Node{node("a")},
		pod("v1", onNode("a"), req("1", "1Gi"), withPriority(1), started(3*time.Hour)),
		pod("v2", onNode("a"), req("1", "1Gi"), withPriority(2), started(2*time.Hour)),
		pod("v3", onNode("a"), req("1", "1Gi"), withPriority(3), started(time.Hour)),
		pod("v4", onNode("a"), req("1", "1Gi"), withPriority(4), started(time.Minute)))
	out, _ := preempt(t, e, w, pod("p", req("2", "1Gi"), withPriority(100)))
	// Reprieve goes most important first: v4 and v3 stay, v2 and v1 go.
	if out.Preemption == nil || !slices.Equal(victimNames(out.Preemption), []string{"v1", "v2"}) {
		t.Fatalf("victims %v, want [v1 v2]", out.Preemption)
	}
}
