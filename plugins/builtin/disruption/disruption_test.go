package disruption

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	fakescale "k8s.io/client-go/scale/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const ns = "ns"

// crontabs is a custom resource with a scale subresource; widgets one
// without.
var (
	crontabGVK = schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "CronTab"}
	widgetGVK  = schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Widget"}
)

// mapper is a RESTMapper that learns the custom kinds (and ReplicaSets)
// only once Reset, as a discovery cache filled before their CRD was
// created.
type mapper struct {
	meta.RESTMapper
	resets int
}

func newMapper() *mapper {
	m := &mapper{}
	m.RESTMapper = meta.NewDefaultRESTMapper(nil)
	return m
}

func (m *mapper) Reset() {
	m.resets++
	d := meta.NewDefaultRESTMapper(nil)
	d.Add(crontabGVK, meta.RESTScopeNamespace)
	d.Add(widgetGVK, meta.RESTScopeNamespace)
	d.Add(appsv1.SchemeGroupVersion.WithKind("ReplicaSet"), meta.RESTScopeNamespace)
	m.RESTMapper = d
}

type fixture struct {
	c      *controller
	client *fake.Clientset
	events *record.FakeRecorder
	scales *fakescale.FakeScaleClient
	mapper *mapper
}

// newFixture caches objs and stores the budgets in the fake API. The
// custom resources' scales are served by crScales (name -> scale).
func newFixture(t *testing.T, crScales map[string]*autoscalingv1.Scale, objs ...runtime.Object) *fixture {
	t.Helper()
	var pdbs []runtime.Object
	for _, o := range objs {
		if p, ok := o.(*policyv1.PodDisruptionBudget); ok {
			pdbs = append(pdbs, p)
		}
	}
	client := fake.NewClientset(pdbs...)
	disco := client.Discovery().(*fakediscovery.FakeDiscovery)
	disco.Resources = []*metav1.APIResourceList{{GroupVersion: "example.com/v1", APIResources: []metav1.APIResource{
		{Name: "crontabs", Namespaced: true, Kind: "CronTab"},
		{Name: "crontabs/scale", Namespaced: true, Group: "autoscaling", Version: "v1", Kind: "Scale"},
		{Name: "widgets", Namespaced: true, Kind: "Widget"},
	}}, {GroupVersion: "apps/v1", APIResources: []metav1.APIResource{
		{Name: "replicasets", Namespaced: true, Kind: "ReplicaSet"},
		{Name: "replicasets/scale", Namespaced: true, Group: "autoscaling", Version: "v1", Kind: "Scale"},
	}}}
	sc := &fakescale.FakeScaleClient{}
	sc.AddReactor("get", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		g := a.(k8stesting.GetAction)
		if s, ok := crScales[g.GetResource().Resource+"/"+g.GetName()]; ok {
			return true, s, nil
		}
		return true, nil, apierrors.NewNotFound(g.GetResource().GroupResource(), g.GetName())
	})
	m := newMapper()
	events := record.NewFakeRecorder(100)
	c, err := newController(client, informers.NewSharedInformerFactory(client, 0),
		&scaleReader{mapper: m, scales: sc, disco: disco}, events,
		clocktesting.NewFakeClock(t0), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		var idx cache.Indexer
		switch o.(type) {
		case *policyv1.PodDisruptionBudget:
			idx = c.pdbs
		case *v1.Pod:
			idx = c.pods
		case *v1.ReplicationController:
			idx = c.rcs
		case *appsv1.ReplicaSet:
			idx = c.rss
		case *appsv1.Deployment:
			idx = c.deps
		case *appsv1.StatefulSet:
			idx = c.sets
		}
		if err := idx.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{c: c, client: client, events: events, scales: sc, mapper: m}
}

func budget(minAvailable, maxUnavailable *intstr.IntOrString, mutate ...func(*policyv1.PodDisruptionBudget)) *policyv1.PodDisruptionBudget {
	p := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "pdb", Namespace: ns, Generation: 3},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: minAvailable, MaxUnavailable: maxUnavailable,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func intOrPct(s string) *intstr.IntOrString {
	v := intstr.Parse(s)
	return &v
}

func ownerRef(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: ptr.To(true)}}
}

// pod is a ready pod of app=web controlled by owner (nil: no controller).
func pod(name string, owner []metav1.OwnerReference, mutate ...func(*v1.Pod)) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web"}, OwnerReferences: owner},
		Status:     v1.PodStatus{Phase: v1.PodRunning, Conditions: []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func unready(p *v1.Pod)  { p.Status.Conditions[0].Status = v1.ConditionFalse }
func deleting(p *v1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: t0} }

func nPods(n int, owner []metav1.OwnerReference, mutate ...func(*v1.Pod)) []runtime.Object {
	var out []runtime.Object
	for i := range n {
		out = append(out, pod(string(rune('a'+i)), owner, mutate...))
	}
	return out
}

func replicaSet(name string, uid types.UID, replicas int32, owner []metav1.OwnerReference) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: uid, OwnerReferences: owner},
		Spec: appsv1.ReplicaSetSpec{Replicas: &replicas,
			Template: v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}}}}
}

func scaleOfCR(uid types.UID, replicas int32) *autoscalingv1.Scale {
	return &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{UID: uid}, Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}
}

var (
	rsRef  = ownerRef("apps/v1", "ReplicaSet", "rs", "rs-uid")
	depRef = ownerRef("apps/v1", "Deployment", "dep", "dep-uid")
	ssRef  = ownerRef("apps/v1", "StatefulSet", "ss", "ss-uid")
	rcRef  = ownerRef("v1", "ReplicationController", "rc", "rc-uid")
	crRef  = ownerRef("example.com/v1", "CronTab", "tab", "tab-uid")
)

func objects(groups ...[]runtime.Object) []runtime.Object {
	var out []runtime.Object
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

func one(o ...runtime.Object) []runtime.Object { return o }

// wantStatus is the part of the status a case checks.
type wantStatus struct {
	healthy, desired, expected, allowed int32
	reason                              string
}

func TestStatus(t *testing.T) {
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "dep", Namespace: ns, UID: "dep-uid"}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](10)}}
	ss := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "ss", Namespace: ns, UID: "ss-uid"}, Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3)}}
	rc := &v1.ReplicationController{ObjectMeta: metav1.ObjectMeta{Name: "rc", Namespace: ns, UID: "rc-uid"}, Spec: v1.ReplicationControllerSpec{Replicas: ptr.To[int32](4)}}
	cases := []struct {
		name     string
		objs     []runtime.Object
		crScales map[string]*autoscalingv1.Scale
		want     wantStatus
		event    string // a prefix of an event the sync must record
		wantErr  string
	}{
		{"minAvailable 2 of 3 ready", objects(one(budget(intOrPct("2"), nil), replicaSet("rs", "rs-uid", 3, nil)), nPods(3, rsRef)),
			nil, wantStatus{3, 2, 3, 1, policyv1.SufficientPodsReason}, "", ""},
		{"minAvailable 2 of 2 ready", objects(one(budget(intOrPct("2"), nil)), nPods(2, rsRef), one(pod("z", rsRef, unready))),
			nil, wantStatus{2, 2, 3, 0, policyv1.InsufficientPodsReason}, "", ""},
		{"minAvailable int needs no controller", objects(one(budget(intOrPct("1"), nil)), nPods(3, nil)),
			nil, wantStatus{3, 1, 3, 2, policyv1.SufficientPodsReason}, "", ""},
		{"pods being deleted are not healthy", objects(one(budget(intOrPct("1"), nil)), nPods(2, nil), one(pod("z", nil, deleting))),
			nil, wantStatus{2, 1, 3, 1, policyv1.SufficientPodsReason}, "", ""},
		{"minAvailable 50% of 5 rounds up to 3", objects(one(budget(intOrPct("50%"), nil), replicaSet("rs", "rs-uid", 5, nil)), nPods(3, rsRef)),
			nil, wantStatus{3, 3, 5, 0, policyv1.InsufficientPodsReason}, "", ""},
		{"minAvailable 50% of 5, all ready", objects(one(budget(intOrPct("50%"), nil), replicaSet("rs", "rs-uid", 5, nil)), nPods(5, rsRef)),
			nil, wantStatus{5, 3, 5, 2, policyv1.SufficientPodsReason}, "", ""},
		{"maxUnavailable 25% of a Deployment of 10 rounds up to 3", objects(one(budget(nil, intOrPct("25%")), dep,
			replicaSet("rs", "rs-uid", 10, depRef)), nPods(10, rsRef)),
			nil, wantStatus{10, 7, 10, 3, policyv1.SufficientPodsReason}, "", ""},
		{"maxUnavailable 1 of a StatefulSet of 3 with one unready", objects(one(budget(nil, intOrPct("1")), ss), nPods(2, ssRef), one(pod("z", ssRef, unready))),
			nil, wantStatus{2, 2, 3, 0, policyv1.InsufficientPodsReason}, "", ""},
		{"maxUnavailable 50% of a ReplicationController of 4", objects(one(budget(nil, intOrPct("50%")), rc), nPods(4, rcRef)),
			nil, wantStatus{4, 2, 4, 2, policyv1.SufficientPodsReason}, "", ""},
		{"maxUnavailable 1 over a custom resource's scale", objects(one(budget(nil, intOrPct("1"))), nPods(4, crRef)),
			map[string]*autoscalingv1.Scale{"crontabs/tab": scaleOfCR("tab-uid", 4)}, wantStatus{4, 3, 4, 1, policyv1.SufficientPodsReason}, "", ""},
		{"maxUnavailable larger than the scale", objects(one(budget(nil, intOrPct("5")), replicaSet("rs", "rs-uid", 3, nil)), nPods(3, rsRef)),
			nil, wantStatus{3, 0, 3, 3, policyv1.SufficientPodsReason}, "", ""},
		{"unmanaged pods are left out of a percentage", objects(one(budget(intOrPct("100%"), nil), replicaSet("rs", "rs-uid", 2, nil)), nPods(2, rsRef), one(pod("z", nil))),
			nil, wantStatus{3, 2, 2, 1, policyv1.SufficientPodsReason}, "Warning UnmanagedPods", ""},
		{"a pod whose controller is unknown fails the sync", objects(one(budget(nil, intOrPct("1"))), nPods(2, rsRef)),
			nil, wantStatus{0, 0, 0, 0, policyv1.SyncFailedReason}, "Warning CalculateExpectedPodCountFailed", `found no controllers for pod "a"`},
		{"a controller kind without scale fails the sync", objects(one(budget(nil, intOrPct("1"))), nPods(1, ownerRef("example.com/v1", "Widget", "w", "w-uid"))),
			nil, wantStatus{0, 0, 0, 0, policyv1.SyncFailedReason}, "Warning CalculateExpectedPodCountFailed", "widgets.example.com does not implement the scale subresource"},
		{"a custom resource recreated under another UID", objects(one(budget(intOrPct("50%"), nil)), nPods(1, crRef)),
			map[string]*autoscalingv1.Scale{"crontabs/tab": scaleOfCR("other-uid", 4)}, wantStatus{0, 0, 0, 0, policyv1.SyncFailedReason}, "", `found no controllers for pod "a"`},
		{"no pods allows nothing", one(budget(intOrPct("0"), nil)),
			nil, wantStatus{0, 0, 0, 0, policyv1.InsufficientPodsReason}, "Normal NoPods No matching pods found", ""},
		{"a ReplicaSet whose Deployment is gone counts through its scale", objects(one(budget(nil, intOrPct("1")), replicaSet("rs", "rs-uid", 2, depRef)), nPods(2, rsRef)),
			map[string]*autoscalingv1.Scale{"replicasets/rs": scaleOfCR("rs-uid", 2)}, wantStatus{2, 1, 2, 1, policyv1.SufficientPodsReason}, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.crScales, tc.objs...)
			_, err := f.c.reconcile(context.Background(), ns+"/pdb")
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("reconcile error %v, want %q", err, tc.wantErr)
			}
			got := f.status(t)
			f.check(t, got, tc.want)
			if tc.wantErr != "" && !strings.Contains(condition(got).Message, tc.wantErr) {
				t.Errorf("condition message %q, want it to name %q", condition(got).Message, tc.wantErr)
			}
			if tc.event != "" {
				f.wantEvent(t, tc.event)
			}
		})
	}
}

func (f *fixture) status(t *testing.T) *policyv1.PodDisruptionBudget {
	t.Helper()
	got, err := f.client.PolicyV1().PodDisruptionBudgets(ns).Get(context.Background(), "pdb", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func condition(p *policyv1.PodDisruptionBudget) metav1.Condition {
	if c := meta.FindStatusCondition(p.Status.Conditions, policyv1.DisruptionAllowedCondition); c != nil {
		return *c
	}
	return metav1.Condition{}
}

func (f *fixture) check(t *testing.T, got *policyv1.PodDisruptionBudget, want wantStatus) {
	t.Helper()
	st := got.Status
	c := condition(got)
	if st.CurrentHealthy != want.healthy || st.DesiredHealthy != want.desired || st.ExpectedPods != want.expected ||
		st.DisruptionsAllowed != want.allowed || c.Reason != want.reason {
		t.Errorf("status healthy=%d desired=%d expected=%d allowed=%d reason=%q, want %+v",
			st.CurrentHealthy, st.DesiredHealthy, st.ExpectedPods, st.DisruptionsAllowed, c.Reason, want)
	}
	wantCond := metav1.ConditionFalse
	if want.allowed > 0 {
		wantCond = metav1.ConditionTrue
	}
	if c.Status != wantCond {
		t.Errorf("DisruptionAllowed %s, want %s", c.Status, wantCond)
	}
	if want.reason != policyv1.SyncFailedReason && (st.ObservedGeneration != got.Generation || c.ObservedGeneration != got.Generation) {
		t.Errorf("observedGeneration %d (condition %d), want %d", st.ObservedGeneration, c.ObservedGeneration, got.Generation)
	}
}

func (f *fixture) wantEvent(t *testing.T, prefix string) {
	t.Helper()
	var seen []string
	for {
		select {
		case e := <-f.events.Events:
			if strings.HasPrefix(e, prefix) {
				return
			}
			seen = append(seen, e)
		default:
			t.Errorf("no event %q among %q", prefix, seen)
			return
		}
	}
}
