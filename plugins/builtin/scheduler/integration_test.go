package scheduler_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/keelson/keelson/e2e/harness"
)

// TestScheduler runs the scheduler against a real keelson server with fake
// nodes registered through the API. The subtests share the server and run
// one after the other, each with its own namespace, nodes and scheduler.
func TestScheduler(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a keelson server")
	}
	// The server runs no plugin (the harness default): each subtest runs
	// the scheduler in this process, with its own configuration.
	// hostPort pods are not baseline: this test is about placement, not admission.
	srv := harness.StartServer(t, harness.ServerOptions{Args: []string{"--pod-security-enforce", "privileged"}})
	createPriorityClasses(t, srv)

	t.Run("SpreadsPodsOverEqualNodes", func(t *testing.T) { testSpread(t, srv) })
	t.Run("UnschedulableMessageListsReasons", func(t *testing.T) { testUnschedulableMessage(t, srv) })
	t.Run("NodeSelectorAndAffinity", func(t *testing.T) { testNodeAffinity(t, srv) })
	t.Run("TaintsCordonAndConditions", func(t *testing.T) { testTaints(t, srv) })
	t.Run("ResourcesAndExtendedResources", func(t *testing.T) { testResources(t, srv) })
	t.Run("HostPorts", func(t *testing.T) { testHostPorts(t, srv) })
	t.Run("InterPodAffinity", func(t *testing.T) { testInterPodAffinity(t, srv) })
	t.Run("TopologySpread", func(t *testing.T) { testTopologySpread(t, srv) })
	t.Run("BoundVolumes", func(t *testing.T) { testVolumes(t, srv) })
	t.Run("RetriesWhenANodeArrives", func(t *testing.T) { testRetryOnNodeAdd(t, srv) })
	t.Run("RetriesWhenAPodGoes", func(t *testing.T) { testRetryOnPodDelete(t, srv) })
	t.Run("Preemption", func(t *testing.T) { testPreemption(t, srv) })
	t.Run("PreemptionRespectsBudgets", func(t *testing.T) { testPreemptionPDB(t, srv) })
	t.Run("OtherSchedulersAndGates", func(t *testing.T) { testOtherSchedulerAndGates(t, srv) })
}

func createPriorityClasses(t *testing.T, srv *harness.Server) {
	cs := srv.Clientset(t)
	for name, value := range map[string]int32{"low": 100, "high": 1000} {
		pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value}
		if _, err := cs.SchedulingV1().PriorityClasses().Create(context.Background(), pc, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating PriorityClass %s: %v", name, err)
		}
	}
}

func name(prefix string, i int) string { return prefix + "-" + strconv.Itoa(i) }

func testSpread(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	a, b, c := f.node("a"), f.node("b"), f.node("c")
	f.runScheduler("")
	for i := range 6 {
		f.pod(name("p", i), requests("100m", "128Mi"))
	}
	perNode := map[string]int{}
	for i := range 6 {
		perNode[f.bound(name("p", i))]++
	}
	for _, n := range []string{a, b, c} {
		if perNode[n] != 2 {
			t.Fatalf("pods per node = %v, want 2 on each of %s, %s, %s", perNode, a, b, c)
		}
	}
	f.event("p-0", "Scheduled", "Successfully assigned "+f.ns+"/p-0 to ")
}

func testUnschedulableMessage(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	f.node("small", capacity("1", "8Gi", 110))
	f.node("tainted-1", taint("dedicated", "db", v1.TaintEffectNoSchedule))
	f.node("tainted-2", taint("dedicated", "db", v1.TaintEffectNoExecute))
	f.runScheduler("")
	f.pod("big", requests("2", "1Gi"))
	want := "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint(s). preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
	if got := f.unschedulable("big"); got != want {
		t.Fatalf("PodScheduled message:\n got %q\nwant %q", got, want)
	}
	f.event("big", "FailedScheduling", want)
}

func nodeAffinity(key string, op v1.NodeSelectorOperator, values ...string) podOpt {
	return func(p *v1.Pod) {
		p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}},
			}}},
		}}
	}
}

func testNodeAffinity(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	a := f.node("a", labels("zone", "z1", "gen", "3", "ssd", "true"))
	b := f.node("b", labels("zone", "z2", "gen", "5"))
	c := f.node("c", labels("gen", "7"))
	f.runScheduler("")
	cases := []struct {
		opt  podOpt
		want []string
	}{
		{func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{"zone": "z2"} }, []string{b}},
		{nodeAffinity("zone", v1.NodeSelectorOpIn, "z1"), []string{a}},
		{nodeAffinity("zone", v1.NodeSelectorOpNotIn, "z1", "z2"), []string{c}},
		{nodeAffinity("ssd", v1.NodeSelectorOpExists), []string{a}},
		{nodeAffinity("zone", v1.NodeSelectorOpDoesNotExist), []string{c}},
		{nodeAffinity("gen", v1.NodeSelectorOpGt, "6"), []string{c}},
		{nodeAffinity("gen", v1.NodeSelectorOpLt, "4"), []string{a}},
	}
	for i, tc := range cases {
		f.pod(name("p", i), tc.opt)
	}
	for i, tc := range cases {
		if got := f.bound(name("p", i)); !slices.Contains(tc.want, got) {
			t.Errorf("pod %d bound to %s, want one of %v", i, got, tc.want)
		}
	}
	f.pod("nowhere", nodeAffinity("zone", v1.NodeSelectorOpIn, "z9"))
	want := "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
	if got := f.unschedulable("nowhere"); !strings.HasPrefix(got, want) {
		t.Fatalf("message %q, want it to start with %q", got, want)
	}
}

func testTaints(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	plain := f.node("plain")
	dedicated := f.node("dedicated", taint("dedicated", "db", v1.TaintEffectNoSchedule), taint("dedicated", "db", v1.TaintEffectNoExecute))
	cordonedNode := f.node("cordoned", cordoned)
	notReady := f.node("notready", ready(v1.ConditionFalse))
	f.runScheduler("")
	for i := range 4 {
		f.pod(name("plain", i))
	}
	for i := range 4 {
		if got := f.bound(name("plain", i)); got != plain {
			t.Fatalf("a pod without tolerations went to %s, want %s", got, plain)
		}
	}
	tolerant := func(p *v1.Pod) {
		p.Spec.Tolerations = []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "db"}}
		p.Spec.NodeSelector = map[string]string{v1.LabelHostname: dedicated}
	}
	f.pod("db", tolerant)
	if got := f.bound("db"); got != dedicated {
		t.Fatalf("tolerating pod went to %s", got)
	}
	// The first filter that rejects a node names it: cordoned before
	// taints, taints (the not-ready one too) before the selector.
	want := "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were unschedulable, 2 node(s) had untolerated taint(s)."
	f.pod("to-cordoned", func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{v1.LabelHostname: cordonedNode} })
	if got := f.unschedulable("to-cordoned"); !strings.HasPrefix(got, want) {
		t.Fatalf("message %q, want it to start with %q", got, want)
	}
	f.pod("to-notready", func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{v1.LabelHostname: notReady} })
	if got := f.unschedulable("to-notready"); !strings.HasPrefix(got, want) {
		t.Fatalf("message %q, want it to start with %q", got, want)
	}
	// Uncordoning the node retries the pod waiting for it.
	n, err := f.cs.CoreV1().Nodes().Get(context.Background(), cordonedNode, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Unschedulable = false
	if _, err := f.cs.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := f.bound("to-cordoned"); got != cordonedNode {
		t.Fatalf("pod went to %s after the uncordon", got)
	}
}

func testResources(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	f.node("cpu", capacity("2", "4Gi", 110))
	gpu := f.node("gpu", capacity("2", "4Gi", 110), extended("example.com/gpu", "1"))
	f.runScheduler("")
	withGPU := func(p *v1.Pod) {
		p.Spec.Containers[0].Resources.Requests = v1.ResourceList{"example.com/gpu": resource.MustParse("1")}
		p.Spec.Containers[0].Resources.Limits = v1.ResourceList{"example.com/gpu": resource.MustParse("1")}
	}
	f.pod("gpu-1", withGPU)
	if got := f.bound("gpu-1"); got != gpu {
		t.Fatalf("gpu pod went to %s", got)
	}
	f.pod("gpu-2", withGPU)
	want := "0/2 nodes are available: 2 Insufficient example.com/gpu."
	if got := f.unschedulable("gpu-2"); !strings.HasPrefix(got, want) {
		t.Fatalf("message %q, want it to start with %q", got, want)
	}
	f.pod("fill-1", requests("1500m", "1Gi"))
	f.pod("fill-2", requests("1500m", "1Gi"))
	if f.bound("fill-1") == f.bound("fill-2") {
		t.Fatal("two 1.5-cpu pods share a 2-cpu node")
	}
	f.pod("memory", requests("100m", "3500Mi"))
	want = "0/2 nodes are available: 2 Insufficient memory."
	if got := f.unschedulable("memory"); !strings.HasPrefix(got, want) {
		t.Fatalf("message %q, want it to start with %q", got, want)
	}
}

func hostPort(port int32) podOpt {
	return func(p *v1.Pod) {
		p.Spec.Containers[0].Ports = []v1.ContainerPort{{ContainerPort: port, HostPort: port, Protocol: v1.ProtocolTCP}}
	}
}

func testHostPorts(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	f.node("a")
	f.node("b")
	f.runScheduler("")
	f.pod("web-1", hostPort(8080))
	f.pod("web-2", hostPort(8080))
	if f.bound("web-1") == f.bound("web-2") {
		t.Fatal("two pods bound the same host port on one node")
	}
	f.pod("web-3", hostPort(8080))
	want := "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
	if got := f.unschedulable("web-3"); got != want {
		t.Fatalf("message\n got %q\nwant %q", got, want)
	}
}

func podAffinityTerm(anti bool, key string, kv ...string) podOpt {
	return func(p *v1.Pod) {
		term := v1.PodAffinityTerm{TopologyKey: key, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{kv[0]: kv[1]}}}
		if anti {
			p.Spec.Affinity = &v1.Affinity{PodAntiAffinity: &v1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{term}}}
		} else {
			p.Spec.Affinity = &v1.Affinity{PodAffinity: &v1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{term}}}
		}
	}
}

func testInterPodAffinity(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	f.node("a")
	f.node("b")
	f.node("c")
	f.runScheduler("")
	f.pod("db", podLabels("app", "db"))
	dbNode := f.bound("db")
	f.pod("near", podAffinityTerm(false, v1.LabelHostname, "app", "db"))
	if got := f.bound("near"); got != dbNode {
		t.Fatalf("pod with affinity to db went to %s, db is on %s", got, dbNode)
	}
	for i := range 2 {
		f.pod(name("far", i), podLabels("app", "far"), podAffinityTerm(true, v1.LabelHostname, "app", "db"))
		if got := f.bound(name("far", i)); got == dbNode {
			t.Fatalf("pod with anti-affinity to db shares its node %s", got)
		}
	}
	// One pod per node: the third replica has nowhere to go.
	f.pod("solo-0", podLabels("app", "solo"), podAffinityTerm(true, v1.LabelHostname, "app", "solo"))
	f.pod("solo-1", podLabels("app", "solo"), podAffinityTerm(true, v1.LabelHostname, "app", "solo"))
	f.pod("solo-2", podLabels("app", "solo"), podAffinityTerm(true, v1.LabelHostname, "app", "solo"))
	f.pod("solo-3", podLabels("app", "solo"), podAffinityTerm(true, v1.LabelHostname, "app", "solo"))
	if got := f.unschedulable("solo-3"); !strings.Contains(got, "3 node(s) didn't match pod anti-affinity rules") {
		t.Fatalf("fourth solo pod: %q", got)
	}
}

func testTopologySpread(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	zone := v1.LabelTopologyZone
	za := f.node("a", labels(zone, "za"))
	zb := f.node("b", labels(zone, "zb"))
	f.runScheduler("")
	spread := func(p *v1.Pod) {
		p.Spec.TopologySpreadConstraints = []v1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: zone, WhenUnsatisfiable: v1.DoNotSchedule,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		}}
	}
	// The first replica is pinned to zone a, so the second must go to b.
	f.pod("web-0", podLabels("app", "web"), spread, func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{zone: "za"} })
	if got := f.bound("web-0"); got != za {
		t.Fatalf("web-0 went to %s", got)
	}
	f.pod("web-1", podLabels("app", "web"), spread)
	if got := f.bound("web-1"); got != zb {
		t.Fatalf("web-1 went to %s, want zone b's node %s", got, zb)
	}
	// With zone b's node cordoned, zone a takes one more replica, then
	// the skew would exceed 1.
	n, err := f.cs.CoreV1().Nodes().Get(context.Background(), zb, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Unschedulable = true
	if _, err := f.cs.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.pod("web-2", podLabels("app", "web"), spread)
	if got := f.bound("web-2"); got != za {
		t.Fatalf("web-2 went to %s", got)
	}
	f.pod("web-3", podLabels("app", "web"), spread)
	want := "0/2 nodes are available: 1 node(s) didn't match pod topology spread constraints, 1 node(s) were unschedulable."
	if got := f.unschedulable("web-3"); !strings.HasPrefix(got, want) {
		t.Fatalf("a third replica in zone a: %q, want it to start with %q", got, want)
	}
}

func testVolumes(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	za := f.node("a", labels(v1.LabelTopologyZone, "za"))
	f.node("b", labels(v1.LabelTopologyZone, "zb"))
	local := f.node("c", labels(v1.LabelTopologyZone, "zb"))
	ctx := context.Background()
	pvs := []*v1.PersistentVolume{
		{ObjectMeta: metav1.ObjectMeta{Name: f.ns + "-zonal", Labels: map[string]string{v1.LabelTopologyZone: "za"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: f.ns + "-local"}, Spec: v1.PersistentVolumeSpec{
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{local}}},
			}}}},
		}},
	}
	for _, pv := range pvs {
		pv.Spec.Capacity = v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}
		pv.Spec.AccessModes = []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}
		pv.Spec.PersistentVolumeSource = v1.PersistentVolumeSource{HostPath: &v1.HostPathVolumeSource{Path: "/tmp/" + pv.Name}}
		if _, err := f.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating PV %s: %v", pv.Name, err)
		}
		t.Cleanup(func() {
			_ = f.cs.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
		})
		// No PersistentVolume controller runs: bind the claim by hand, as
		// it would (volumeName, bind-completed, phase Bound).
		pvc := &v1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: strings.TrimPrefix(pv.Name, f.ns+"-"), Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
			Spec: v1.PersistentVolumeClaimSpec{
				AccessModes: pv.Spec.AccessModes, VolumeName: pv.Name, StorageClassName: new(""),
				Resources: v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}
		created, err := f.cs.CoreV1().PersistentVolumeClaims(f.ns).Create(ctx, pvc, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating PVC %s: %v", pvc.Name, err)
		}
		created.Status.Phase = v1.ClaimBound
		if _, err := f.cs.CoreV1().PersistentVolumeClaims(f.ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("marking PVC %s bound: %v", pvc.Name, err)
		}
	}
	f.runScheduler("")
	claim := func(name string) podOpt {
		return func(p *v1.Pod) {
			p.Spec.Volumes = []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}}
		}
	}
	f.pod("uses-zonal", claim("zonal"))
	if got := f.bound("uses-zonal"); got != za {
		t.Fatalf("pod with a zone-a volume went to %s", got)
	}
	f.pod("uses-local", claim("local"))
	if got := f.bound("uses-local"); got != local {
		t.Fatalf("pod with a local volume went to %s", got)
	}
	f.pod("uses-missing", claim("missing"))
	want := `0/3 nodes are available: persistentvolumeclaim "missing" not found.`
	if got := f.unschedulable("uses-missing"); !strings.HasPrefix(got, want) {
		t.Fatalf("message %q, want it to start with %q", got, want)
	}
}

func testRetryOnNodeAdd(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	f.node("small", capacity("1", "4Gi", 110))
	f.runScheduler("")
	f.pod("big", requests("3", "1Gi"))
	f.unschedulable("big")
	big := f.node("big", capacity("8", "16Gi", 110))
	if got := f.bound("big"); got != big {
		t.Fatalf("pod went to %s once the big node arrived", got)
	}
}

func testRetryOnPodDelete(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	f.node("only", capacity("1", "4Gi", 110))
	f.runScheduler(`{"preemption": {"disabled": true}}`)
	f.pod("first", requests("800m", "1Gi"))
	f.bound("first")
	f.pod("second", requests("800m", "1Gi"))
	if got := f.unschedulable("second"); got != "0/1 nodes are available: 1 Insufficient cpu." {
		t.Fatalf("message %q (preemption is off: no suffix)", got)
	}
	f.forceDelete("first")
	f.bound("second")
}

func testPreemption(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	node := f.node("only", capacity("2", "4Gi", 110))
	f.runScheduler("")
	f.pod("low-0", requests("1", "1Gi"), priority("low"))
	f.pod("low-1", requests("1", "1Gi"), priority("low"))
	f.bound("low-0")
	f.bound("low-1")
	f.pod("high", requests("1500m", "1Gi"), priority("high"))
	p := f.waitPod("high", "not nominated", func(p *v1.Pod) bool { return p.Status.NominatedNodeName == node })
	if p.Spec.NodeName != "" {
		t.Fatalf("preemptor bound before its victims left")
	}
	want := "0/1 nodes are available: 1 Insufficient cpu. preemption: found a potential placement for pod on node " + node + ", preempting 2 victims"
	f.event("high", "FailedScheduling", want)
	// Both low pods must go (1.5 cpu needed of 2). They terminate
	// gracefully; the test plays the kubelet and removes them.
	for _, v := range []string{"low-0", "low-1"} {
		victim := f.waitPod(v, "not evicted", func(p *v1.Pod) bool { return p.DeletionTimestamp != nil })
		if c := disruptionTarget(victim); c == nil || c.Reason != v1.PodReasonPreemptionByScheduler {
			t.Fatalf("victim %s conditions %+v, want DisruptionTarget/PreemptionByScheduler", v, victim.Status.Conditions)
		}
		f.event(v, "Preempted", "Preempted by pod "+string(p.UID)+" on node "+node)
		f.forceDelete(v)
	}
	if got := f.bound("high"); got != node {
		t.Fatalf("preemptor went to %s", got)
	}
}

func disruptionTarget(p *v1.Pod) *v1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == v1.DisruptionTarget {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func testPreemptionPDB(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	a := f.node("a", capacity("1", "4Gi", 110))
	b := f.node("b", capacity("1", "4Gi", 110))
	ctx := context.Background()
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "guard"},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &intstr.IntOrString{IntVal: 1},
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}},
		},
	}
	created, err := f.cs.PolicyV1().PodDisruptionBudgets(f.ns).Create(ctx, pdb, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No disruption controller runs: report the budget exhausted by hand.
	created.Status = policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 0, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1, ObservedGeneration: created.Generation}
	if _, err := f.cs.PolicyV1().PodDisruptionBudgets(f.ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.runScheduler("")
	pin := func(n string) podOpt {
		return func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{v1.LabelHostname: n} }
	}
	f.pod("guarded", requests("800m", "1Gi"), priority("low"), podLabels("app", "guarded"), pin(a))
	f.pod("free", requests("800m", "1Gi"), priority("low"), pin(b))
	f.bound("guarded")
	f.bound("free")
	f.pod("high", requests("800m", "1Gi"), priority("high"))
	p := f.waitPod("high", "not nominated", func(p *v1.Pod) bool { return p.Status.NominatedNodeName != "" })
	if p.Status.NominatedNodeName != b {
		t.Fatalf("preemption chose %s, want %s (the other victim is protected by a budget)", p.Status.NominatedNodeName, b)
	}
	f.waitPod("free", "not evicted", func(p *v1.Pod) bool { return p.DeletionTimestamp != nil })
	f.forceDelete("free")
	if got := f.bound("high"); got != b {
		t.Fatalf("preemptor went to %s", got)
	}
}

func testOtherSchedulerAndGates(t *testing.T, srv *harness.Server) {
	f := newFixture(t, srv)
	f.node("a")
	f.runScheduler("")
	f.pod("gated", func(p *v1.Pod) { p.Spec.SchedulingGates = []v1.PodSchedulingGate{{Name: "example.com/hold"}} })
	f.pod("other", func(p *v1.Pod) { p.Spec.SchedulerName = "other-scheduler" })
	f.neverBound("other", "sentinel-1")
	f.neverBound("gated", "sentinel-2")
	p, err := f.cs.CoreV1().Pods(f.ns).Get(context.Background(), "gated", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Spec.SchedulingGates = nil
	if _, err := f.cs.CoreV1().Pods(f.ns).Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.bound("gated")
}
