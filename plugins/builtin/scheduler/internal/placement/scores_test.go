package placement

import (
	"fmt"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

// scoresOf runs only the given weights over every node p fits and returns
// the totals by node.
func scoresOf(t *testing.T, w Weights, l Listers, world *cluster.Cache, p *v1.Pod) map[string]int64 {
	t.Helper()
	e := testEngine(Config{Weights: w, SystemDefaultSpreading: true}, l)
	c, st, err := e.newCycle(t.Context(), world, nil, podInfo(p), world.Nodes())
	if err != nil || !st.OK() {
		t.Fatalf("pre-checks: %v %v", err, st)
	}
	var feasible []*cluster.NodeInfo
	for _, n := range world.Nodes() {
		if c.filter(n).OK() {
			feasible = append(feasible, n)
		}
	}
	totals, err := c.prioritize(feasible)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for i, n := range feasible {
		out[n.Name] = totals[i]
	}
	return out
}

func TestScoreLeastAllocatedAndBalanced(t *testing.T) {
	nodes := []*v1.Node{node("empty"), node("half"), node("skewed")}
	w := world(nodes,
		pod("h", onNode("half"), req("2", "4Gi")),
		pod("s", onNode("skewed"), req("3", "1Gi")))
	p := pod("p", req("1", "2Gi"))

	// Least allocated: mean over cpu and memory of (alloc - requested) *
	// 100 / alloc, requests including the pod's.
	// empty: cpu (4-1)/4 = 75, mem (8-2)/8 = 75 -> 75
	// half: cpu (4-3)/4 = 25, mem (8-6)/8 = 25 -> 25
	// skewed: cpu (4-4)/4 = 0, mem (8-3)/8 = 62 -> 31
	got := scoresOf(t, Weights{NodeResourcesFit: 1}, Listers{}, w, p)
	if want := map[string]int64{"empty": 75, "half": 25, "skewed": 31}; !mapsEqual(got, want) {
		t.Fatalf("least allocated = %v, want %v", got, want)
	}

	// Balanced: 50 + (50 + with - without) / 2 where each term is
	// 100 * (1 - |cpu% - mem%| / 2).
	// empty: with = 100 (25%, 25%), without = 100 -> 75
	// skewed: with = 100*(1-|1-0.375|/2) = 68, without = 100*(1-|0.75-0.125|/2) = 68 -> 75
	// half: with 100, without 100 -> 75
	got = scoresOf(t, Weights{BalancedAllocation: 1}, Listers{}, w, p)
	if want := map[string]int64{"empty": 75, "half": 75, "skewed": 75}; !mapsEqual(got, want) {
		t.Fatalf("balanced = %v, want %v", got, want)
	}
	// A cpu-only pod: the score rewards the change in balance, not the
	// balance itself.
	// empty: with 100*(1-|0.25-0|/2) = 87, without 100 -> 50 + (50+87-100)/2 = 68
	// half: with (0.75, 0.5) 87, without (0.5, 0.5) 100 -> 68
	// skewed: with (1, 0.125) 56, without (0.75, 0.125) 68 -> 69
	got = scoresOf(t, Weights{BalancedAllocation: 1}, Listers{}, w, pod("c", req("1", "")))
	if want := map[string]int64{"empty": 68, "half": 68, "skewed": 69}; !mapsEqual(got, want) {
		t.Fatalf("balanced for a cpu-only pod = %v, want %v", got, want)
	}
	// Best-effort pods skip the balanced score.
	if got := scoresOf(t, Weights{BalancedAllocation: 1}, Listers{}, w, pod("be")); got["empty"] != 0 || got["skewed"] != 0 {
		t.Fatalf("balanced for a best-effort pod = %v, want all 0", got)
	}
}

func TestScoreLeastAllocatedCountsDefaultRequests(t *testing.T) {
	// A container without requests counts as 100m cpu and 200 MiB.
	w := world([]*v1.Node{node("a"), node("b")}, pod("x", onNode("a")))
	got := scoresOf(t, Weights{NodeResourcesFit: 1}, Listers{}, w, pod("p"))
	// a: cpu (4000-200)/4000 = 95, mem (8192-400)/8192 = 95 -> 95; b: 97, 97 -> 97
	if want := map[string]int64{"a": 95, "b": 97}; !mapsEqual(got, want) {
		t.Fatalf("scores = %v, want %v", got, want)
	}
}

func TestScoreTaintToleration(t *testing.T) {
	w := world([]*v1.Node{
		node("clean"),
		node("one", withTaint("a", "", v1.TaintEffectPreferNoSchedule)),
		node("two", withTaint("a", "", v1.TaintEffectPreferNoSchedule), withTaint("b", "", v1.TaintEffectPreferNoSchedule)),
	})
	got := scoresOf(t, Weights{TaintToleration: 1}, Listers{}, w, pod("p"))
	if want := map[string]int64{"clean": 100, "one": 50, "two": 0}; !mapsEqual(got, want) {
		t.Fatalf("scores = %v, want %v", got, want)
	}
	got = scoresOf(t, Weights{TaintToleration: 1}, Listers{}, w, pod("p", tolerate("a", v1.TolerationOpExists, "", v1.TaintEffectPreferNoSchedule)))
	if want := map[string]int64{"clean": 100, "one": 100, "two": 0}; !mapsEqual(got, want) {
		t.Fatalf("scores with a toleration = %v, want %v", got, want)
	}
}

func TestScoreNodeAffinity(t *testing.T) {
	w := world([]*v1.Node{node("a", withLabels("disk", "ssd", "zone", "z1")), node("b", withLabels("disk", "ssd")), node("c")})
	p := pod("p", func(p *v1.Pod) {
		p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.PreferredSchedulingTerm{
			{Weight: 30, Preference: v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "disk", Operator: v1.NodeSelectorOpIn, Values: []string{"ssd"}}}}},
			{Weight: 10, Preference: v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "zone", Operator: v1.NodeSelectorOpExists}}}},
		}}}
	})
	got := scoresOf(t, Weights{NodeAffinity: 2}, Listers{}, w, p)
	// raw 40, 30, 0 -> normalized 100, 75, 0 -> weighted x2
	if want := map[string]int64{"a": 200, "b": 150, "c": 0}; !mapsEqual(got, want) {
		t.Fatalf("scores = %v, want %v", got, want)
	}
}

func TestScoreTopologySpread(t *testing.T) {
	zone := v1.LabelTopologyZone
	app := withPodLabels("app", "web")
	w := world([]*v1.Node{node("a1", withLabels(zone, "a")), node("a2", withLabels(zone, "a")), node("b1", withLabels(zone, "b"))},
		pod("w1", onNode("a1"), app), pod("w2", onNode("a1"), app))
	got := scoresOf(t, Weights{PodTopologySpread: 1}, Listers{}, w, pod("p", app, spreadBy(zone, 1, v1.ScheduleAnyway, "app", "web")))
	if !(got["b1"] > got["a2"] && got["a2"] == got["a1"]) {
		t.Fatalf("zone spread scores = %v, want b1 best, a1 = a2", got)
	}
	got = scoresOf(t, Weights{PodTopologySpread: 1}, Listers{}, w, pod("p", app, spreadBy(v1.LabelHostname, 1, v1.ScheduleAnyway, "app", "web")))
	if !(got["b1"] == got["a2"] && got["a2"] > got["a1"]) {
		t.Fatalf("host spread scores = %v, want a1 worst, a2 = b1", got)
	}
}

func TestScoreSystemDefaultSpreading(t *testing.T) {
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
		Spec:       appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}
	owned := func(p *v1.Pod) {
		p.Labels = map[string]string{"app": "web"}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", Controller: new(true)}}
	}
	l := Listers{
		ReplicaSets: appslisters.NewReplicaSetLister(indexer(rs)),
		Services:    corelisters.NewServiceLister(indexer()),
	}
	w := world([]*v1.Node{node("a"), node("b")}, pod("r1", onNode("a"), owned), pod("r2", onNode("a"), owned))
	got := scoresOf(t, Weights{PodTopologySpread: 1}, l, w, pod("p", owned))
	if got["b"] <= got["a"] {
		t.Fatalf("default spreading scores = %v, want b (no replica) above a (two)", got)
	}
	bare := scoresOf(t, Weights{PodTopologySpread: 1}, l, w, pod("p"))
	if bare["a"] != 0 || bare["b"] != 0 {
		t.Fatalf("a pod without owner or service gets spread scores %v, want none", bare)
	}
}

func TestScoreInterPodAffinity(t *testing.T) {
	zone := v1.LabelTopologyZone
	w := world([]*v1.Node{node("a", withLabels(zone, "a")), node("b", withLabels(zone, "b")), node("c", withLabels(zone, "c"))},
		pod("db", onNode("a"), withPodLabels("app", "db")),
		pod("cache", onNode("b"), withPodLabels("app", "cache"), podAffinity(false, true, zone, "app", "web")))
	got := scoresOf(t, Weights{InterPodAffinity: 1}, Listers{}, w, pod("p", withPodLabels("app", "web"),
		podAffinity(false, false, zone, "app", "db")))
	// a: +10 (preferred affinity to db); b: +1 (cache requires web, hard
	// weight 1); c: 0 -> normalized 100, 10, 0.
	if want := map[string]int64{"a": 100, "b": 10, "c": 0}; !mapsEqual(got, want) {
		t.Fatalf("scores = %v, want %v", got, want)
	}
	anti := scoresOf(t, Weights{InterPodAffinity: 1}, Listers{}, w, pod("p", podAffinity(true, false, zone, "app", "db")))
	if !(anti["a"] < anti["b"] && anti["b"] == anti["c"]) {
		t.Fatalf("preferred anti-affinity scores = %v, want a lowest", anti)
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestNumFeasibleNodesToFind(t *testing.T) {
	tests := []struct {
		pct        int32
		nodes, out int
	}{
		{0, 50, 50}, {0, 100, 100}, {0, 1000, 420}, {0, 5000, 500}, {0, 6000, 300},
		{0, 10000, 500}, {0, 200, 100}, {30, 1000, 300}, {100, 1000, 1000}, {1, 1000, 100},
	}
	for _, tc := range tests {
		e := testEngine(Config{PercentageOfNodesToScore: tc.pct}, Listers{})
		if got := e.numFeasibleNodesToFind(tc.nodes); got != tc.out {
			t.Errorf("numFeasibleNodesToFind(%d nodes, %d%%) = %d, want %d", tc.nodes, tc.pct, got, tc.out)
		}
	}
}

func TestScheduleSamplesAndRotates(t *testing.T) {
	var nodes []*v1.Node
	for i := range 1000 {
		nodes = append(nodes, node(fmt.Sprintf("n%04d", i)))
	}
	w := world(nodes)
	for _, par := range []int{1, 4} {
		e := testEngine(Config{Parallelism: par}, Listers{})
		seen := map[string]bool{}
		for i := range 5 {
			res, err := e.Schedule(t.Context(), w, nil, podInfo(pod(fmt.Sprintf("p%d", i), req("100m", "100Mi"))))
			if err != nil {
				t.Fatal(err)
			}
			if res.Feasible != 420 || res.Evaluated != 420 {
				t.Fatalf("parallelism %d: evaluated %d, feasible %d; want 420 of 1000 nodes (upstream's adaptive 42%%)", par, res.Evaluated, res.Feasible)
			}
			seen[res.Node] = true
		}
		if e.nextStart != (5*420)%1000 {
			t.Fatalf("parallelism %d: next scan starts at %d, want %d: successive pods must sample different nodes", par, e.nextStart, (5*420)%1000)
		}
		if len(seen) != 5 {
			t.Fatalf("parallelism %d: 5 pods went to %d distinct empty nodes, want 5", par, len(seen))
		}
	}
}

func TestScheduleFitErrorMessage(t *testing.T) {
	w := world([]*v1.Node{
		node("small", withAllocatable(v1.ResourceCPU, "1")),
		node("t1", withTaint("x", "", v1.TaintEffectNoSchedule)),
		node("t2", withTaint("x", "", v1.TaintEffectNoSchedule)),
	})
	e := testEngine(Config{Preemption: true}, Listers{})
	p := pod("p", req("2", "1Gi"))
	_, err := e.Schedule(t.Context(), w, nil, podInfo(p))
	fitErr, ok := err.(*FitError)
	if !ok {
		t.Fatalf("Schedule error = %v, want a FitError", err)
	}
	want := "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint(s)."
	if fitErr.Error() != want {
		t.Fatalf("message\n got %q\nwant %q", fitErr.Error(), want)
	}
	if got := fitErr.Diagnosis.Rejectors.Names(); !slices.Equal(got, []string{"TaintToleration", "NodeResourcesFit"}) {
		t.Fatalf("rejectors %v", got)
	}
	if _, err := e.Preempt(t.Context(), w, nil, podInfo(p), fitErr); err != nil {
		t.Fatal(err)
	}
	want += " preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
	if fitErr.Error() != want {
		t.Fatalf("message after preemption\n got %q\nwant %q", fitErr.Error(), want)
	}
	if _, err := e.Schedule(t.Context(), world(nil), nil, podInfo(p)); err == nil || err.Error() != NoNodesAvailable {
		t.Fatalf("empty cluster: %v, want %q", err, NoNodesAvailable)
	}
}

func TestScheduleNominatedPodsHoldTheirRoom(t *testing.T) {
	w := world([]*v1.Node{node("a")})
	e := testEngine(Config{}, Listers{})
	big := podInfo(pod("big", req("3", "1Gi"), withPriority(100)))
	nom := fakeNominator{"a": {big}}
	low := podInfo(pod("low", req("2", "1Gi"), withPriority(10)))
	if _, err := e.Schedule(t.Context(), w, nom, low); err == nil {
		t.Fatal("a lower-priority pod took the room held for a nominated pod")
	}
	high := podInfo(pod("high", req("2", "1Gi"), withPriority(1000)))
	if _, err := e.Schedule(t.Context(), w, nom, high); err != nil {
		t.Fatalf("a higher-priority pod must ignore lower nominations: %v", err)
	}
}

type fakeNominator map[string][]*cluster.PodInfo

func (f fakeNominator) NominatedPods(node string) []*cluster.PodInfo { return f[node] }
