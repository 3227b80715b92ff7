package daemonset

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keelson/keelson/plugins/builtin/internal/expectations"
	"github.com/keelson/keelson/plugins/builtin/internal/freshness"
	"github.com/keelson/keelson/plugins/builtin/internal/history"
	"github.com/keelson/keelson/plugins/builtin/internal/ownedpods"
)

var now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newDS(image string, mutate ...func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "ns", UID: "ds-uid", Generation: 3},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: image}}},
			},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr(intstr.FromInt32(1)), MaxSurge: ptr(intstr.FromInt32(0))}},
		},
	}
	for _, m := range mutate {
		m(ds)
	}
	return ds
}

func node(name string, mutate ...func(*v1.Node)) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	for _, m := range mutate {
		m(n)
	}
	return n
}

func taint(key string, effect v1.TaintEffect) func(*v1.Node) {
	return func(n *v1.Node) { n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: key, Effect: effect}) }
}

func hashOf(t *testing.T, ds *appsv1.DaemonSet) (*appsv1.ControllerRevision, string) {
	t.Helper()
	data, err := history.Patch(&ds.Spec.Template)
	if err != nil {
		t.Fatal(err)
	}
	h := history.Hash(data.Raw, new(int32))
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: history.Name(ds.Name, h), Namespace: "ns", Labels: map[string]string{"app": "agent", history.HashLabel: h},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, kind)}},
		Data: data, Revision: 1,
	}, h
}

func daemonPod(ds *appsv1.DaemonSet, nodeName, hash string, ready bool) *v1.Pod {
	st := v1.ConditionFalse
	if ready {
		st = v1.ConditionTrue
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-" + nodeName + "-" + hash, Namespace: "ns", UID: types.UID("uid-" + nodeName + hash),
			Labels:          map[string]string{"app": "agent", history.HashLabel: hash},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, kind)}},
		Spec: v1.PodSpec{NodeName: nodeName},
		Status: v1.PodStatus{Phase: v1.PodRunning, Conditions: []v1.PodCondition{
			{Type: v1.PodReady, Status: st, LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))}}},
	}
}

type fixture struct {
	c      *controller
	client *fake.Clientset
}

func newFixture(ds *appsv1.DaemonSet, objs ...any) *fixture {
	idx := func(extra cache.Indexers) cache.Indexer {
		ix := cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}
		for k, v := range extra {
			ix[k] = v
		}
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, ix)
	}
	byCtl := cache.Indexers{byController: ownedpods.IndexByController}
	clk := clocktesting.NewFakeClock(now)
	c := &controller{
		sets: idx(nil), pods: idx(byCtl), revs: idx(byCtl), nodes: idx(nil),
		exp: expectations.New(clk, expectations.DefaultTTL), events: record.NewFakeRecorder(100),
		clock: clk, logger: slog.New(slog.NewTextHandler(io.Discard, nil)), burst: 250,
	}
	c.fresh = freshness.New(map[string]freshness.Cache{podsCache: c.pods, setsCache: c.sets})
	client := fake.NewClientset(ds)
	// The fake API does not generate names.
	n := 0
	client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*v1.Pod)
		if p.Name == "" {
			n++
			p.Name = fmt.Sprintf("%s%d", p.GenerateName, n)
		}
		return false, nil, nil
	})
	_ = c.sets.Add(ds)
	for _, o := range objs {
		switch o := o.(type) {
		case *v1.Pod:
			_ = c.pods.Add(o)
			_ = client.Tracker().Add(o)
		case *appsv1.ControllerRevision:
			_ = c.revs.Add(o)
			_ = client.Tracker().Add(o)
		case *v1.Node:
			_ = c.nodes.Add(o)
		}
	}
	c.client = client
	return &fixture{c: c, client: client}
}

func (f *fixture) sync(t *testing.T) {
	t.Helper()
	if _, err := f.c.reconcile(context.Background(), "ns/agent"); err != nil {
		t.Fatal(err)
	}
}

// writes returns "create <node>" for each pod created (by the node its
// affinity names) and "delete <pod>" for each deletion, sorted.
func (f *fixture) writes(t *testing.T) []string {
	var out []string
	for _, a := range f.client.Actions() {
		if a.GetResource().Resource != "pods" {
			continue
		}
		switch a := a.(type) {
		case k8stesting.CreateAction:
			p := a.GetObject().(*v1.Pod)
			out = append(out, "create "+targetNode(p))
		case k8stesting.DeleteAction:
			out = append(out, "delete "+a.GetName())
		}
	}
	sort.Strings(out)
	return out
}

func TestPlacement(t *testing.T) {
	tests := []struct {
		name  string
		ds    *appsv1.DaemonSet
		nodes []*v1.Node
		want  []string
	}{
		{"every node", newDS("v1"), []*v1.Node{node("a"), node("b")}, []string{"create a", "create b"}},
		{"NoSchedule taint skipped", newDS("v1"), []*v1.Node{node("a"), node("b", taint("dedicated", v1.TaintEffectNoSchedule))}, []string{"create a"}},
		{"tolerated taint", newDS("v1", func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.Tolerations = []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpExists}}
		}), []*v1.Node{node("b", taint("dedicated", v1.TaintEffectNoSchedule))}, []string{"create b"}},
		{"automatic tolerations: cordoned, not ready, pressure", newDS("v1"), []*v1.Node{
			node("a", taint(v1.TaintNodeUnschedulable, v1.TaintEffectNoSchedule)),
			node("b", taint(v1.TaintNodeNotReady, v1.TaintEffectNoExecute)),
			node("c", taint(v1.TaintNodeDiskPressure, v1.TaintEffectNoSchedule)),
		}, []string{"create a", "create b", "create c"}},
		{"network-unavailable only with hostNetwork", newDS("v1"), []*v1.Node{node("a", taint(v1.TaintNodeNetworkUnavailable, v1.TaintEffectNoSchedule))}, nil},
		{"network-unavailable tolerated with hostNetwork", newDS("v1", func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.HostNetwork = true }),
			[]*v1.Node{node("a", taint(v1.TaintNodeNetworkUnavailable, v1.TaintEffectNoSchedule))}, []string{"create a"}},
		{"nodeSelector", newDS("v1", func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "b"}
		}),
			[]*v1.Node{node("a"), node("b")}, []string{"create b"}},
		{"required node affinity", newDS("v1", func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{
				NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: v1.NodeSelectorOpNotIn, Values: []string{"a"}}}}}}}}
		}), []*v1.Node{node("a"), node("b")}, []string{"create b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objs []any
			for _, n := range tt.nodes {
				objs = append(objs, n)
			}
			f := newFixture(tt.ds, objs...)
			f.sync(t)
			if got := f.writes(t); !slices.Equal(got, tt.want) {
				t.Errorf("writes %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewPodIsPinnedThroughTheScheduler(t *testing.T) {
	f := newFixture(newDS("v1"), node("a"))
	f.sync(t)
	l, _ := f.client.CoreV1().Pods("ns").List(context.Background(), metav1.ListOptions{})
	if len(l.Items) != 1 {
		t.Fatalf("%d pods", len(l.Items))
	}
	p := l.Items[0]
	if p.Spec.NodeName != "" || targetNode(&p) != "a" || p.GenerateName != "agent-" || p.Labels[history.HashLabel] == "" ||
		p.Labels[appsv1.DeprecatedTemplateGeneration] != "3" || len(p.Spec.Tolerations) != 6 {
		t.Errorf("pod %+v", p)
	}
}

func TestEvictsFromNoExecuteAndMisscheduled(t *testing.T) {
	ds := newDS("v1")
	rev, h := hashOf(t, ds)
	f := newFixture(ds, rev, node("a", taint("evict", v1.TaintEffectNoExecute)), node("b", taint("nosched", v1.TaintEffectNoSchedule)),
		daemonPod(ds, "a", h, true), daemonPod(ds, "b", h, true), daemonPod(ds, "gone", h, true))
	f.sync(t)
	want := []string{"delete agent-a-" + h, "delete agent-gone-" + h}
	if got := f.writes(t); !slices.Equal(got, want) {
		t.Errorf("writes %q, want %q (a NoSchedule taint keeps running pods)", got, want)
	}
	ds2, _ := f.client.AppsV1().DaemonSets("ns").Get(context.Background(), "agent", metav1.GetOptions{})
	if st := ds2.Status; st.DesiredNumberScheduled != 0 || st.NumberMisscheduled != 2 || st.ObservedGeneration != 3 {
		t.Errorf("status %+v", st)
	}
}

func TestRollingUpdate(t *testing.T) {
	old := newDS("v1")
	oldRev, oldHash := hashOf(t, old)
	tests := []struct {
		name       string
		maxUnav    int32
		maxSurge   int32
		readyOld   []bool
		wantDelete int
		wantCreate int
	}{
		{"maxUnavailable 1", 1, 0, []bool{true, true, true}, 1, 0},
		{"maxUnavailable 2", 2, 0, []bool{true, true, true}, 2, 0},
		{"unavailable old pods go first and count", 1, 0, []bool{false, true, true}, 1, 0},
		{"surge 1 starts one new pod", 0, 1, []bool{true, true, true}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := newDS("v2", func(d *appsv1.DaemonSet) {
				d.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr(intstr.FromInt32(tt.maxUnav)), MaxSurge: ptr(intstr.FromInt32(tt.maxSurge))}
			})
			objs := []any{oldRev}
			for i, r := range tt.readyOld {
				n := fmt.Sprintf("n%d", i)
				objs = append(objs, node(n), daemonPod(ds, n, oldHash, r))
			}
			f := newFixture(ds, objs...)
			f.sync(t)
			var del, cre int
			for _, w := range f.writes(t) {
				if w[:6] == "delete" {
					del++
				} else {
					cre++
				}
			}
			if del != tt.wantDelete || cre != tt.wantCreate {
				t.Errorf("writes %q, want %d deletions and %d creations", f.writes(t), tt.wantDelete, tt.wantCreate)
			}
		})
	}
}

func TestSurgeDeletesOldOnceNewAvailable(t *testing.T) {
	old := newDS("v1")
	oldRev, oldHash := hashOf(t, old)
	ds := newDS("v2", func(d *appsv1.DaemonSet) {
		d.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr(intstr.FromInt32(0)), MaxSurge: ptr(intstr.FromInt32(1))}
	})
	newRev, newHash := hashOf(t, ds)
	newRev.Revision = 2
	f := newFixture(ds, oldRev, newRev, node("a"), daemonPod(ds, "a", oldHash, true), daemonPod(ds, "a", newHash, true))
	f.sync(t)
	if got, want := f.writes(t), []string{"delete agent-a-" + oldHash}; !slices.Equal(got, want) {
		t.Errorf("writes %q, want %q", got, want)
	}
}

func TestOnDeleteKeepsOldPodsAndStatus(t *testing.T) {
	old := newDS("v1")
	oldRev, oldHash := hashOf(t, old)
	ds := newDS("v2", func(d *appsv1.DaemonSet) {
		d.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
	})
	f := newFixture(ds, oldRev, node("a"), node("b"), daemonPod(ds, "a", oldHash, true), daemonPod(ds, "b", oldHash, false))
	f.sync(t)
	if got := f.writes(t); len(got) != 0 {
		t.Errorf("OnDelete wrote %q", got)
	}
	got, _ := f.client.AppsV1().DaemonSets("ns").Get(context.Background(), "agent", metav1.GetOptions{})
	st := got.Status
	if st.DesiredNumberScheduled != 2 || st.CurrentNumberScheduled != 2 || st.NumberReady != 1 || st.NumberAvailable != 1 ||
		st.UpdatedNumberScheduled != 0 || st.NumberUnavailable != 1 {
		t.Errorf("status %+v", st)
	}
}

func TestExpectationsHoldBackDuplicates(t *testing.T) {
	f := newFixture(newDS("v1"), node("a"), node("b"))
	f.sync(t)
	f.sync(t)
	if got := f.writes(t); len(got) != 2 {
		t.Errorf("writes %q: the second sync created again before the cache showed the pods", got)
	}
}

func ptr[T any](v T) *T { return &v }

// TestSyncWaitsForItsOwnWrites: once the controller created pods, a sync
// on a pod cache older than those creations is held back (a retried
// freshness.StaleError, as upstream's StaleControllerConsistencyDaemonSet)
// and goes on once the cache has them.
func TestSyncWaitsForItsOwnWrites(t *testing.T) {
	f := newFixture(newDS("v1"), node("a"), node("b"))
	rv := 10
	f.client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rv++
		a.(k8stesting.CreateAction).GetObject().(*v1.Pod).ResourceVersion = strconv.Itoa(rv)
		return false, nil, nil
	})
	f.sync(t)
	if got := f.writes(t); len(got) != 2 {
		t.Fatalf("writes %v, want a pod created on each node", got)
	}
	// The pod cache has seen some pod, older than the creations.
	_ = f.c.pods.Add(&v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other", ResourceVersion: "5"}})
	if _, err := f.c.reconcile(context.Background(), "ns/agent"); !freshness.IsStale(err) {
		t.Fatalf("reconcile on a pod cache behind the controller's creations: %v, want a freshness.StaleError", err)
	}
	list, err := f.client.CoreV1().Pods("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		_ = f.c.pods.Add(&list.Items[i])
	}
	if _, err := f.c.reconcile(context.Background(), "ns/agent"); err != nil {
		t.Fatalf("reconcile once the cache has the creations: %v", err)
	}
}
