package nodelifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/sdk"
	"github.com/keelson/keelson/plugins/sdk/nodehealth"
)

// fixture is the controller against a fake API and a fake clock; the test
// runs its passes itself, so every step is deterministic.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	cs    *fake.Clientset
	c     *controller
	clock *testingclock.FakeClock
}

func newFixture(t *testing.T, config string, objs ...runtime.Object) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cs := fake.NewClientset(objs...)
	clk := testingclock.NewFakeClock(t0)
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTransform(trim))
	c, err := build(sdk.Env{Config: json.RawMessage(config), Logger: slog.New(slog.DiscardHandler)}, cs, factory, clk)
	if err != nil {
		t.Fatal(err)
	}
	c.nodeEvents, c.podEvents = record.NewFakeRecorder(100), record.NewFakeRecorder(100)
	factory.Start(ctx.Done())
	t.Cleanup(func() {
		cancel()
		factory.Shutdown() // waits for the informers, which stop with ctx
		c.queue.ShutDown()
	})
	factory.WaitForCacheSync(ctx.Done())
	return &fixture{t: t, ctx: ctx, cs: cs, c: c, clock: clk}
}

func node(name, zone string, gossip bool, ready corev1.ConditionStatus) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour)),
		Labels: map[string]string{corev1.LabelTopologyZone: zone}}}
	if gossip {
		n.Annotations = map[string]string{nodehealth.LivenessAnnotation: nodehealth.LivenessGossip}
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready,
		LastHeartbeatTime: metav1.NewTime(t0.Add(-time.Hour)), LastTransitionTime: metav1.NewTime(t0.Add(-time.Hour))}}
	return n
}

func nodeLease(name string, renew time.Time) *coordinationv1.Lease {
	r := metav1.NewMicroTime(renew)
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease},
		Spec: coordinationv1.LeaseSpec{RenewTime: &r}}
}

func boundPod(name, node string, tolerations ...corev1.Toleration) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))},
		Spec:       corev1.PodSpec{NodeName: node, Tolerations: tolerations},
		Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(t0.Add(-time.Hour))}}},
	}
}

// eventually polls until cond holds: the informer caches follow the fake
// API asynchronously.
func (f *fixture) eventually(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// cached waits until the controller's cache shows the node as the API does.
func (f *fixture) cached(name string) {
	f.t.Helper()
	f.eventually("the cache to catch up with node "+name, func() bool {
		api, err := f.cs.CoreV1().Nodes().Get(f.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		c, err := f.c.nodes.Get(name)
		return err == nil && fmt.Sprint(c.Spec.Taints, c.Status.Conditions) == fmt.Sprint(api.Spec.Taints, api.Status.Conditions)
	})
}

func (f *fixture) node(name string) *corev1.Node {
	f.t.Helper()
	n, err := f.cs.CoreV1().Nodes().Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) pod(name string) (*corev1.Pod, bool) {
	p, err := f.cs.CoreV1().Pods("default").Get(f.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return p, true
}

func (f *fixture) renew(name string) {
	f.t.Helper()
	if _, err := f.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Update(f.ctx, nodeLease(name, f.clock.Now()), metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	f.eventually("the cache to see "+name+"'s renewal", func() bool {
		l, err := f.c.leases.Get(name)
		return err == nil && l.Spec.RenewTime.Time.Equal(f.clock.Now())
	})
}

func readyStatus(n *corev1.Node) corev1.ConditionStatus {
	if c := nodehealth.Condition(n, corev1.NodeReady); c != nil {
		return c.Status
	}
	return ""
}

// TestSilentLeaseNodeLosesItsPods walks a node that stops renewing its
// Lease through upstream's whole sequence: Ready=Unknown after the grace
// period, the unreachable taints, its pods marked NotReady, then evicted
// as their tolerations run out. A renewing node and a gossip node (whose
// health is the raft leader's) are left alone.
func TestSilentLeaseNodeLosesItsPods(t *testing.T) {
	f := newFixture(t, `{}`,
		node("silent", "z1", false, corev1.ConditionTrue), nodeLease("silent", t0),
		node("renewing", "z1", false, corev1.ConditionTrue), nodeLease("renewing", t0),
		node("gossip", "z1", true, corev1.ConditionTrue),
		boundPod("defaults", "silent", toleration(corev1.TaintNodeUnreachable, ptr.To[int64](300))),
		boundPod("intolerant", "silent"),
		boundPod("forever", "silent", toleration(corev1.TaintNodeUnreachable, nil)),
		boundPod("elsewhere", "renewing"),
	)
	for elapsed := time.Duration(0); elapsed <= 40*time.Second; elapsed += 5 * time.Second {
		f.c.monitor(f.ctx)
		if st := readyStatus(f.node("silent")); st != corev1.ConditionTrue {
			t.Fatalf("silent node Ready=%s after %s, within the grace period", st, elapsed)
		}
		f.clock.Step(5 * time.Second)
		f.renew("renewing")
	}
	f.c.monitor(f.ctx) // 45s without a renewal
	if c := nodehealth.Condition(f.node("silent"), corev1.NodeReady); c.Status != corev1.ConditionUnknown || c.Reason != nodehealth.ReasonUnknown {
		t.Fatalf("silent node's Ready after the grace period: %+v", c)
	}
	for _, n := range []string{"renewing", "gossip"} {
		if st := readyStatus(f.node(n)); st != corev1.ConditionTrue {
			t.Errorf("%s Ready=%s; only the silent node stopped", n, st)
		}
	}
	f.cached("silent")

	// The node worker: NoSchedule taint and pods NotReady.
	if err := f.c.sync(f.ctx, "silent"); err != nil {
		t.Fatal(err)
	}
	if got := keys(f.node("silent").Spec.Taints); got != "node.kubernetes.io/unreachable:NoSchedule" {
		t.Errorf("taints after the worker: %s", got)
	}
	for _, name := range []string{"defaults", "intolerant", "forever"} {
		p, _ := f.pod(name)
		if hasCondition(p, corev1.PodReady, corev1.ConditionTrue) {
			t.Errorf("pod %s still Ready on an unreachable node", name)
		}
	}
	if p, _ := f.pod("elsewhere"); !hasCondition(p, corev1.PodReady, corev1.ConditionTrue) {
		t.Error("a pod on a healthy node was marked NotReady")
	}

	// The next monitor pass queues it; the tainting pass taints it.
	f.cached("silent")
	f.c.monitor(f.ctx)
	f.c.taintingPass(f.ctx)
	taintedAt := f.clock.Now()
	n := f.node("silent")
	if !hasTaint(n.Spec.Taints, unreachableNoExecute) {
		t.Fatalf("no unreachable NoExecute taint: %s", keys(n.Spec.Taints))
	}
	f.cached("silent")

	// A pod that tolerates nothing goes at once, marked as upstream marks it.
	if err := f.c.sync(f.ctx, "silent"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.pod("intolerant"); ok {
		t.Error("a pod without tolerations survived the NoExecute taint")
	}
	if _, ok := f.pod("defaults"); !ok {
		t.Fatal("a pod tolerating 300s was evicted at once")
	}
	deleted := false
	for _, a := range f.cs.Actions() {
		if a.GetVerb() == "patch" && a.GetSubresource() == "status" && a.GetResource().Resource == "pods" {
			if p, ok := a.(interface{ GetPatch() []byte }); ok && containsAll(string(p.GetPatch()), "DisruptionTarget", "DeletionByTaintManager") {
				deleted = true
			}
		}
	}
	if !deleted {
		t.Error("the evicted pod was not marked a disruption target first")
	}

	// 300s after the taint, the defaults pod goes; the forever pod stays.
	f.clock.SetTime(taintedAt.Add(299 * time.Second))
	if err := f.c.sync(f.ctx, "silent"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.pod("defaults"); !ok {
		t.Fatal("evicted before its tolerationSeconds ran out")
	}
	f.clock.SetTime(taintedAt.Add(300 * time.Second))
	if err := f.c.sync(f.ctx, "silent"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.pod("defaults"); ok {
		t.Error("not evicted when its tolerationSeconds ran out")
	}
	if _, ok := f.pod("forever"); !ok {
		t.Error("a pod tolerating the taint forever was evicted")
	}
	if _, ok := f.pod("elsewhere"); !ok {
		t.Error("a pod on a healthy node was evicted")
	}
}

// TestNodeBackRemovesTaints: a node ready again loses its NoExecute taints
// at once and its pods stay.
func TestNodeBackRemovesTaints(t *testing.T) {
	added := metav1.NewTime(t0.Add(-time.Minute))
	n := node("back", "z1", true, corev1.ConditionTrue)
	n.Spec.Taints = []corev1.Taint{{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &added},
		{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule}, {Key: "dedicated", Effect: corev1.TaintEffectNoSchedule}}
	f := newFixture(t, `{}`, n, node("other", "z1", true, corev1.ConditionTrue),
		boundPod("p", "back", toleration(corev1.TaintNodeUnreachable, ptr.To[int64](300))))
	f.c.monitor(f.ctx)
	if got := keys(f.node("back").Spec.Taints); got != "dedicated:NoSchedule,node.kubernetes.io/unreachable:NoSchedule" {
		t.Fatalf("taints after the monitor pass: %s", got)
	}
	f.cached("back")
	if err := f.c.sync(f.ctx, "back"); err != nil {
		t.Fatal(err)
	}
	if got := keys(f.node("back").Spec.Taints); got != "dedicated:NoSchedule" {
		t.Errorf("taints after the worker: %s", got)
	}
	f.clock.Step(time.Hour)
	f.cached("back")
	if err := f.c.sync(f.ctx, "back"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.pod("p"); !ok {
		t.Error("a pod of a node that recovered was evicted")
	}
}

func zoneNodes(f func(i int) *corev1.Node, n int) []runtime.Object {
	var out []runtime.Object
	for i := range n {
		out = append(out, f(i))
	}
	return out
}

// TestEvictionRateAndSmallZones: three nodes of a zone of ten going down
// are tainted one every ten seconds; three of a zone of four (partial
// disruption of a small cluster) are not tainted at all.
func TestEvictionRateAndSmallZones(t *testing.T) {
	objs := zoneNodes(func(i int) *corev1.Node {
		st := corev1.ConditionTrue
		if i < 3 {
			st = corev1.ConditionUnknown
		}
		return node(fmt.Sprintf("big-%d", i), "big", true, st)
	}, 10)
	objs = append(objs, zoneNodes(func(i int) *corev1.Node {
		st := corev1.ConditionTrue
		if i < 3 {
			st = corev1.ConditionUnknown
		}
		return node(fmt.Sprintf("small-%d", i), "small", true, st)
	}, 4)...)
	f := newFixture(t, `{}`, objs...)
	tainted := map[string]time.Duration{}
	for elapsed := time.Duration(0); elapsed <= 25*time.Second; elapsed += taintingPeriod {
		if elapsed%(5*time.Second) == 0 {
			f.c.monitor(f.ctx)
		}
		f.c.taintingPass(f.ctx)
		for i := range 4 {
			for _, zone := range []string{"big", "small"} {
				name := fmt.Sprintf("%s-%d", zone, i)
				if _, seen := tainted[name]; !seen && hasTaint(f.node(name).Spec.Taints, unreachableNoExecute) {
					tainted[name] = elapsed
					f.cached(name)
				}
			}
		}
		f.clock.Step(taintingPeriod)
	}
	// The order among nodes that went down in the same pass is the
	// cache's; the pace is the zone's rate.
	var names []string
	var times []time.Duration
	for n, at := range tainted {
		names, times = append(names, n), append(times, at)
	}
	slices.Sort(names)
	slices.Sort(times)
	if fmt.Sprint(names) != "[big-0 big-1 big-2]" || fmt.Sprint(times) != "[0s 10s 20s]" {
		t.Errorf("tainted %v; want big-0, big-1 and big-2 ten seconds apart, and nothing in the small, partially disrupted zone", tainted)
	}
}

// TestFullDisruptionStopsEverything: with no node ready anywhere, the
// controller takes the NoExecute taints off and taints nothing.
func TestFullDisruptionStopsEverything(t *testing.T) {
	added := metav1.NewTime(t0.Add(-time.Minute))
	down := node("down-0", "z1", true, corev1.ConditionUnknown)
	down.Spec.Taints = []corev1.Taint{{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &added}}
	f := newFixture(t, `{}`, down, node("down-1", "z1", true, corev1.ConditionUnknown), node("down-2", "z2", true, corev1.ConditionUnknown))
	for range 3 {
		f.c.monitor(f.ctx)
		for range 20 {
			f.c.taintingPass(f.ctx)
			f.clock.Step(time.Second)
		}
	}
	for _, name := range []string{"down-0", "down-1", "down-2"} {
		if ts := noExecute(f.node(name).Spec.Taints); len(ts) != 0 {
			t.Errorf("%s has NoExecute taints %s while every zone is down", name, keys(ts))
		}
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
