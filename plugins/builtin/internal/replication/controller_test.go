package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keelson/keelson/plugins/sdk"
)

var now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// testKind is the ReplicaSet kind, as the replicaset plugin defines it
// (that package imports this one, so it is restated here).
func testKind() Kind {
	return Kind{
		GVK:       appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
		Resource:  appsv1.Resource("replicasets"),
		Component: "replicaset-controller",
		Informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Apps().V1().ReplicaSets().Informer()
		},
		View: func(obj any) (*appsv1.ReplicaSet, bool) { rs, ok := obj.(*appsv1.ReplicaSet); return rs, ok },
		Get: func(ctx context.Context, c kubernetes.Interface, ns, name string) (*appsv1.ReplicaSet, error) {
			return c.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
		},
		UpdateStatus: func(ctx context.Context, c kubernetes.Interface, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
			return c.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, rs, metav1.UpdateOptions{})
		},
		TerminatingReplicas: true,
	}
}

// fixture is a controller on a fake clientset whose caches the test fills
// by hand (no informers run), so each sync sees exactly the given world.
type fixture struct {
	t      *testing.T
	client *fake.Clientset
	c      *Controller
	events *record.FakeRecorder

	mu      sync.Mutex
	created []string
}

func newFixture(t *testing.T, cfg Config, objs ...runtime.Object) *fixture {
	t.Helper()
	f := &fixture{t: t, client: fake.NewClientset(objs...), events: record.NewFakeRecorder(1000)}
	// The fake tracker does not generate names.
	f.client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*v1.Pod)
		f.mu.Lock()
		defer f.mu.Unlock()
		p.Name = fmt.Sprintf("%s%d", p.GenerateName, len(f.created))
		f.created = append(f.created, p.Name)
		return false, nil, nil
	})
	factory := informers.NewSharedInformerFactory(f.client, 0)
	c, err := New(testKind(), cfg, f.client, factory, slog.New(slog.NewTextHandler(io.Discard, nil)), clocktesting.NewFakeClock(now))
	if err != nil {
		t.Fatal(err)
	}
	c.events = f.events
	f.c = c
	for _, o := range objs {
		switch o.(type) {
		case *appsv1.ReplicaSet:
			f.must(c.owners.GetIndexer().Add(o))
		case *v1.Pod:
			f.must(c.pods.GetIndexer().Add(o))
		}
	}
	return f
}

func (f *fixture) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) sync() error { return f.c.sync(context.Background(), "ns/web") }

// actions returns "verb resource[/subresource]" of the client calls so far.
func (f *fixture) actions(verb string) []k8stesting.Action {
	var out []k8stesting.Action
	for _, a := range f.client.Actions() {
		if a.GetVerb() == verb {
			out = append(out, a)
		}
	}
	return out
}

func (f *fixture) status() appsv1.ReplicaSetStatus {
	rs, err := f.client.AppsV1().ReplicaSets("ns").Get(context.Background(), "web", metav1.GetOptions{})
	f.must(err)
	return rs.Status
}

func (f *fixture) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-f.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func replicaSet(replicas int32, opts ...func(*appsv1.ReplicaSet)) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "rs-uid", Generation: 1},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "tier": "front"}, Annotations: map[string]string{"a": "b"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "nginx"}}},
			},
		},
	}
	for _, o := range opts {
		o(rs)
	}
	return rs
}

type podOpt func(*v1.Pod)

func ownedBy(uid types.UID) podOpt {
	return func(p *v1.Pod) {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: uid, Controller: &yes}}
	}
}

func ready(since time.Time) podOpt {
	return func(p *v1.Pod) {
		p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(since)}}
	}
}

func labelled(kv ...string) podOpt {
	return func(p *v1.Pod) {
		p.Labels = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func podNamed(name string, opts ...podOpt) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name), Labels: map[string]string{"app": "web", "tier": "front"}, CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))},
		Spec:       v1.PodSpec{NodeName: "n1"},
		Status:     v1.PodStatus{Phase: v1.PodRunning},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func TestCreatesMissingReplicasFromTheTemplate(t *testing.T) {
	f := newFixture(t, Config{Workers: 1, BurstReplicas: 500}, replicaSet(3))
	f.must(f.sync())
	creates := f.actions("create")
	if len(creates) != 3 {
		t.Fatalf("%d creates, want 3", len(creates))
	}
	p := creates[0].(k8stesting.CreateAction).GetObject().(*v1.Pod)
	ref := metav1.GetControllerOf(p)
	if p.GenerateName != "web-" || p.Labels["tier"] != "front" || p.Annotations["a"] != "b" || p.Spec.Containers[0].Image != "nginx" ||
		ref == nil || ref.UID != "rs-uid" || ref.Kind != "ReplicaSet" || !*ref.BlockOwnerDeletion {
		t.Errorf("created pod %+v", p)
	}
	if evs := f.drainEvents(); len(evs) != 3 || !strings.HasPrefix(evs[0], "Normal SuccessfulCreate Created pod: web-") {
		t.Errorf("events %q", evs)
	}
	// Nothing new was observed yet: a second sync must not create again.
	f.must(f.sync())
	if n := len(f.actions("create")); n != 3 {
		t.Errorf("%d creates after a second sync with unobserved creations, want still 3", n)
	}
}

func TestBurstAndSlowStart(t *testing.T) {
	f := newFixture(t, Config{Workers: 1, BurstReplicas: 6}, replicaSet(100))
	failAfter := 3
	f.client.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.created) > failAfter {
			return true, nil, errors.New("exceeded quota: pods")
		}
		return false, nil, nil
	})
	err := f.sync()
	if err == nil || !strings.Contains(err.Error(), "exceeded quota") {
		t.Fatalf("sync err = %v, want the create error", err)
	}
	// Batches of 1 and 2 succeed; the third (4, capped to the 3 left of
	// the burst of 6) runs into the quota after one more pod: no fourth.
	if n := len(f.actions("create")); n != 6 {
		t.Errorf("%d create calls, want 6 (1+2+3 within a burst of 6)", n)
	}
	st := f.status()
	if len(st.Conditions) != 1 || st.Conditions[0].Type != appsv1.ReplicaSetReplicaFailure || st.Conditions[0].Reason != "FailedCreate" {
		t.Errorf("conditions %+v, want ReplicaFailure FailedCreate", st.Conditions)
	}
	// The failed creates will never be observed: only the successful ones
	// are still expected.
	if adds, _ := f.c.exp.Pending("ns/web"); adds != 4 {
		t.Errorf("pending creations %d, want the 4 that succeeded", adds)
	}
}

func TestScaleDownDeletesTheLeastUsefulPods(t *testing.T) {
	uid := types.UID("rs-uid")
	objs := []runtime.Object{
		replicaSet(2),
		podNamed("ready-old", ownedBy(uid), ready(now.Add(-2*time.Hour))),
		podNamed("ready-new", ownedBy(uid), ready(now.Add(-time.Hour))),
		podNamed("unready", ownedBy(uid)),
		podNamed("pending", ownedBy(uid), func(p *v1.Pod) { p.Status.Phase = v1.PodPending }),
		podNamed("unscheduled", ownedBy(uid), func(p *v1.Pod) { p.Spec.NodeName = "" }),
	}
	f := newFixture(t, Config{Workers: 1, BurstReplicas: 500}, objs...)
	f.must(f.sync())
	var deleted []string
	for _, a := range f.actions("delete") {
		deleted = append(deleted, a.(k8stesting.DeleteAction).GetName())
	}
	slices.Sort(deleted)
	if want := []string{"pending", "unready", "unscheduled"}; !slices.Equal(deleted, want) {
		t.Errorf("deleted %v, want %v", deleted, want)
	}
	if _, dels := f.c.exp.Pending("ns/web"); dels != 3 {
		t.Errorf("pending deletions %d, want 3", dels)
	}
}

func TestClaimAdoptsOrphansAndReleasesStrays(t *testing.T) {
	uid := types.UID("rs-uid")
	f := newFixture(t, Config{Workers: 1, BurstReplicas: 500},
		replicaSet(2),
		podNamed("orphan"),
		podNamed("stray", ownedBy(uid), labelled("app", "debug")),
		podNamed("mine", ownedBy(uid)),
		podNamed("theirs", ownedBy("other-uid")),
	)
	f.must(f.sync())
	patched := map[string]string{}
	for _, a := range f.actions("patch") {
		pa := a.(k8stesting.PatchAction)
		patched[pa.GetName()] = string(pa.GetPatch())
	}
	if len(patched) != 2 || !strings.Contains(patched["orphan"], `"controller":true`) || !strings.Contains(patched["stray"], `"$patch":"delete"`) {
		t.Errorf("patches %v, want the orphan adopted and the stray released", patched)
	}
	if n := len(f.actions("create")); n != 0 {
		t.Errorf("%d creates; mine and the adopted orphan make 2", n)
	}
	if st := f.status(); st.Replicas != 2 {
		t.Errorf("status replicas %d, want 2", st.Replicas)
	}
}

func TestStatusCounts(t *testing.T) {
	uid := types.UID("rs-uid")
	deleting := func(p *v1.Pod) { ts := metav1.NewTime(now); p.DeletionTimestamp = &ts }
	f := newFixture(t, Config{Workers: 1, BurstReplicas: 500},
		replicaSet(4, func(rs *appsv1.ReplicaSet) { rs.Spec.MinReadySeconds = 30; rs.Generation = 7 }),
		podNamed("available", ownedBy(uid), ready(now.Add(-time.Minute))),
		podNamed("just-ready", ownedBy(uid), ready(now.Add(-10*time.Second))),
		podNamed("unready", ownedBy(uid)),
		podNamed("partly-labelled", ownedBy(uid), labelled("app", "web")),
		podNamed("terminating", ownedBy(uid), deleting),
		podNamed("finished", ownedBy(uid), func(p *v1.Pod) { p.Status.Phase = v1.PodSucceeded }),
	)
	f.must(f.sync())
	st := f.status()
	want := appsv1.ReplicaSetStatus{Replicas: 4, FullyLabeledReplicas: 3, ReadyReplicas: 2, AvailableReplicas: 1, ObservedGeneration: 7}
	if st.Replicas != want.Replicas || st.FullyLabeledReplicas != want.FullyLabeledReplicas || st.ReadyReplicas != want.ReadyReplicas ||
		st.AvailableReplicas != want.AvailableReplicas || st.ObservedGeneration != want.ObservedGeneration ||
		st.TerminatingReplicas == nil || *st.TerminatingReplicas != 1 {
		t.Errorf("status %+v, want %+v with 1 terminating", st, want)
	}
}

func TestNothingIsCreatedForAnOwnerBeingDeleted(t *testing.T) {
	f := newFixture(t, Config{Workers: 1, BurstReplicas: 500}, replicaSet(3, func(rs *appsv1.ReplicaSet) {
		ts := metav1.NewTime(now)
		rs.DeletionTimestamp = &ts
	}))
	f.must(f.sync())
	if n := len(f.actions("create")); n != 0 {
		t.Errorf("%d creates for a ReplicaSet being deleted", n)
	}
}

func TestUnchangedStatusIsNotWritten(t *testing.T) {
	uid := types.UID("rs-uid")
	rs := replicaSet(1, func(rs *appsv1.ReplicaSet) {
		rs.Status = appsv1.ReplicaSetStatus{Replicas: 1, FullyLabeledReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, ObservedGeneration: 1, TerminatingReplicas: new(int32)}
	})
	f := newFixture(t, Config{Workers: 1, BurstReplicas: 500}, rs, podNamed("a", ownedBy(uid), ready(now.Add(-time.Hour))))
	f.must(f.sync())
	if n := len(f.actions("update")); n != 0 {
		t.Errorf("%d status updates of an up-to-date status", n)
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		raw, wantErr string
		want         Config
	}{
		{"", "", DefaultConfig()},
		{`{"workers": 2}`, "", Config{Workers: 2, BurstReplicas: 500}},
		{`{"workers": 0}`, "workers is 0", Config{}},
		{`{"burstReplicas": -1}`, "burstReplicas is -1", Config{}},
		{`{"wrokers": 2}`, `unknown field "wrokers"`, Config{}},
		{`{"kubeAPIQPS": 20, "kubeAPIBurst": 30}`, "", Config{Workers: 5, BurstReplicas: 500, ClientLimits: sdk.ClientLimits{KubeAPIQPS: 20, KubeAPIBurst: 30}}},
		{`{"kubeAPIQPS": -1}`, "kubeAPIQPS is -1", Config{}},
	} {
		got, err := ParseConfig("replicaset", []byte(tc.raw))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "replicaset") {
				t.Errorf("%q: err = %v, want one naming the plugin and %q", tc.raw, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.raw, got, err, tc.want)
		}
	}
}

func TestSlowStart(t *testing.T) {
	for _, tc := range []struct {
		count, failFrom, wantDone, wantCalls int
	}{
		{count: 0, failFrom: 99, wantDone: 0, wantCalls: 0},
		{count: 10, failFrom: 99, wantDone: 10, wantCalls: 10},
		{count: 10, failFrom: 0, wantDone: 0, wantCalls: 1},
		{count: 10, failFrom: 2, wantDone: 2, wantCalls: 3}, // 1, then 2 (one fails)
	} {
		var mu sync.Mutex
		calls := 0
		done, err := slowStart(tc.count, func() error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls > tc.failFrom {
				return errors.New("no")
			}
			return nil
		})
		if done != tc.wantDone || calls != tc.wantCalls || (err != nil) != (tc.wantDone < tc.count) {
			t.Errorf("%+v: done %d calls %d err %v", tc, done, calls, err)
		}
	}
}
