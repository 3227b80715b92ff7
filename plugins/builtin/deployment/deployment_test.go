package deployment

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
)

var now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func nginxTemplate(image string) v1.PodTemplateSpec {
	return v1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "nginx"}},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "nginx", Image: image, Ports: []v1.ContainerPort{{ContainerPort: 80}}}}},
	}
}

func TestTemplateHashMatchesUpstream(t *testing.T) {
	// Golden values from kube-controller-manager 1.37's ComputeHash for
	// this template: the same template gets the same ReplicaSet name
	// under either controller.
	tmpl := nginxTemplate("nginx:1.7.9")
	if got := templateHash(&tmpl, nil); got != "77656fdf4f" {
		t.Errorf("hash = %s, want 77656fdf4f", got)
	}
	one := int32(1)
	if got := templateHash(&tmpl, &one); got != "647cf6664" {
		t.Errorf("hash with collision count 1 = %s, want 647cf6664", got)
	}
}

func deploymentOf(replicas int32, opts ...func(*appsv1.Deployment)) *appsv1.Deployment {
	q := intstr.FromString("25%")
	pds, rhl := int32(600), int32(10)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "d-uid", Generation: 1},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}},
			Template: nginxTemplate("nginx:2"),
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &q, MaxUnavailable: &q}},
			ProgressDeadlineSeconds: &pds,
			RevisionHistoryLimit:    &rhl,
		},
	}
	for _, o := range opts {
		o(d)
	}
	return d
}

func surge(s, u string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		ms, mu := intstr.Parse(s), intstr.Parse(u)
		d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &ms, MaxUnavailable: &mu}
	}
}

func TestFenceposts(t *testing.T) {
	for _, tc := range []struct {
		replicas          int32
		maxSurge, maxUnav string
		surge, unav       int32
	}{
		{10, "25%", "25%", 3, 2},
		{1, "25%", "25%", 1, 0},
		{3, "0", "0", 0, 1},
		{4, "50%", "1", 2, 1},
		{0, "25%", "25%", 0, 0},
		{5, "0", "100%", 0, 5},
	} {
		d := deploymentOf(tc.replicas, surge(tc.maxSurge, tc.maxUnav))
		if s, u := maxSurge(d), maxUnavailable(d); s != tc.surge || u != tc.unav {
			t.Errorf("%d replicas, %s/%s: surge %d unavailable %d, want %d %d", tc.replicas, tc.maxSurge, tc.maxUnav, s, u, tc.surge, tc.unav)
		}
	}
	recreate := deploymentOf(10, func(d *appsv1.Deployment) {
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	})
	if maxSurge(recreate) != 0 || maxUnavailable(recreate) != 0 {
		t.Error("Recreate has fenceposts")
	}
}

func rsOf(name string, rev string, spec, available int32, tmpl v1.PodTemplateSpec, opts ...func(*appsv1.ReplicaSet)) *appsv1.ReplicaSet {
	yes := true
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "ns", UID: types.UID(name), Generation: 1,
			Labels:            map[string]string{"app": "nginx"},
			Annotations:       map[string]string{revisionAnnotation: rev, desiredReplicasAnnotation: "10", maxReplicasAnnotation: "13"},
			OwnerReferences:   []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "d-uid", Controller: &yes}},
			CreationTimestamp: metav1.NewTime(now.Add(-time.Duration(100-len(rev)) * time.Minute)),
		},
		Spec:   appsv1.ReplicaSetSpec{Replicas: &spec, Template: tmpl, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}}},
		Status: appsv1.ReplicaSetStatus{Replicas: spec, ReadyReplicas: available, AvailableReplicas: available, ObservedGeneration: 1},
	}
	for _, o := range opts {
		o(rs)
	}
	return rs
}

// sizedFor records on a ReplicaSet the Deployment size it was last sized
// for (and that size's ceiling).
func sizedFor(desired, ceiling string) func(*appsv1.ReplicaSet) {
	return func(rs *appsv1.ReplicaSet) {
		rs.Annotations[desiredReplicasAnnotation] = desired
		rs.Annotations[maxReplicasAnnotation] = ceiling
	}
}

func TestNewReplicaSetSize(t *testing.T) {
	for _, tc := range []struct {
		name         string
		replicas     int32
		old, newSize int32
		strategy     appsv1.DeploymentStrategyType
		want         int32
	}{
		{"fresh deployment", 10, 0, 0, appsv1.RollingUpdateDeploymentStrategyType, 10},
		{"surge from full old", 10, 10, 0, appsv1.RollingUpdateDeploymentStrategyType, 3},
		{"at the ceiling", 10, 10, 3, appsv1.RollingUpdateDeploymentStrategyType, 3},
		{"old scaled down", 10, 8, 3, appsv1.RollingUpdateDeploymentStrategyType, 5},
		{"never past replicas", 10, 0, 9, appsv1.RollingUpdateDeploymentStrategyType, 10},
		{"recreate", 10, 10, 0, appsv1.RecreateDeploymentStrategyType, 10},
	} {
		d := deploymentOf(tc.replicas)
		d.Spec.Strategy.Type = tc.strategy
		newRS := rsOf("new", "2", tc.newSize, 0, nginxTemplate("nginx:2"))
		old := rsOf("old", "1", tc.old, tc.old, nginxTemplate("nginx:1"))
		got, err := newReplicaSetSize(d, []*appsv1.ReplicaSet{old, newRS}, newRS)
		if err != nil || got != tc.want {
			t.Errorf("%s: size %d (%v), want %d", tc.name, got, err, tc.want)
		}
	}
}

func TestNewReplicaSetAnnotations(t *testing.T) {
	d := deploymentOf(10, func(d *appsv1.Deployment) {
		d.Annotations = map[string]string{"kubernetes.io/change-cause": "v2", v1.LastAppliedConfigAnnotation: "{...}", revisionAnnotation: "1"}
	})
	fresh := &appsv1.ReplicaSet{}
	setNewReplicaSetAnnotations(discard, d, fresh, "3", false)
	a := fresh.Annotations
	if a[revisionAnnotation] != "3" || a["kubernetes.io/change-cause"] != "v2" || a[desiredReplicasAnnotation] != "10" || a[maxReplicasAnnotation] != "13" {
		t.Errorf("new replica set annotations %v", a)
	}
	if _, ok := a[v1.LastAppliedConfigAnnotation]; ok || a[revisionHistoryAnnotation] != "" {
		t.Errorf("copied what must not be: %v", a)
	}
	// Rolled back to: the old revision moves into the history.
	back := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{revisionAnnotation: "2", revisionHistoryAnnotation: "1"}}}
	if !setNewReplicaSetAnnotations(discard, d, back, "4", true) || back.Annotations[revisionAnnotation] != "4" || back.Annotations[revisionHistoryAnnotation] != "1,2" {
		t.Errorf("rolled-back replica set annotations %v", back.Annotations)
	}
	if setNewReplicaSetAnnotations(discard, d, back, "4", true) {
		t.Error("a second pass changed annotations")
	}
	long := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{revisionAnnotation: "9999", revisionHistoryAnnotation: strings.Repeat("1234,", 399) + "1234"}}}
	setNewReplicaSetAnnotations(discard, d, long, "10000", true)
	if h := long.Annotations[revisionHistoryAnnotation]; len(h) > maxRevisionHistoryChars || !strings.HasSuffix(h, ",9999") {
		t.Errorf("history of %d chars ends %q", len(h), h[len(h)-10:])
	}
}

// fixture is a controller on a fake clientset with hand-filled caches.
type fixture struct {
	t      *testing.T
	client *fake.Clientset
	c      *Controller
	clock  *clocktesting.FakeClock
	events *record.FakeRecorder
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	f := &fixture{t: t, client: fake.NewClientset(objs...), clock: clocktesting.NewFakeClock(now), events: record.NewFakeRecorder(100)}
	c, err := New(Config{Workers: 1}, f.client, informers.NewSharedInformerFactory(f.client, 0), discard, f.clock)
	if err != nil {
		t.Fatal(err)
	}
	c.events = f.events
	f.c = c
	for _, o := range objs {
		var err error
		switch o.(type) {
		case *appsv1.Deployment:
			err = c.deployments.GetIndexer().Add(o)
		case *appsv1.ReplicaSet:
			err = c.replicaSets.GetIndexer().Add(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// sizes returns the replicas each ReplicaSet update set.
func (f *fixture) sizes() map[string]int32 {
	out := map[string]int32{}
	for _, a := range f.client.Actions() {
		if a.GetResource().Resource != "replicasets" || a.GetSubresource() != "" {
			continue
		}
		switch a.GetVerb() {
		case "update":
			rs := a.(k8stesting.UpdateAction).GetObject().(*appsv1.ReplicaSet)
			out[rs.Name] = *rs.Spec.Replicas
		case "create":
			rs := a.(k8stesting.CreateAction).GetObject().(*appsv1.ReplicaSet)
			out["created:"+rs.Name] = *rs.Spec.Replicas
		}
	}
	return out
}

func (f *fixture) deployment() *appsv1.Deployment {
	d, err := f.client.AppsV1().Deployments("ns").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func TestProportionalScaling(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		to                       int32
		old, newSize             int32
		desiredBefore, maxBefore string
		wantOld, wantNew         int32
	}{
		// Mid-rollout at the fenceposts of 10 (old 8, new 5 of 13).
		{"up to 20", 20, 8, 5, "10", "13", 15, 10},
		{"down to 10", 10, 15, 10, "20", "25", 8, 5},
		// Rounding leftovers go to the largest.
		{"up to 11", 11, 8, 5, "10", "13", 9, 5},
		{"down to 0", 0, 8, 5, "10", "13", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := sizedFor(tc.desiredBefore, tc.maxBefore)
			old := rsOf("old", "1", tc.old, tc.old, nginxTemplate("nginx:1"), before)
			newRS := rsOf("new", "2", tc.newSize, 0, nginxTemplate("nginx:2"), before)
			d := deploymentOf(tc.to)
			f := newFixture(t, d, old, newRS)
			if err := f.c.sync(context.Background(), "ns/web"); err != nil {
				t.Fatal(err)
			}
			got := f.sizes()
			if got["old"] != tc.wantOld || got["new"] != tc.wantNew {
				t.Errorf("sizes %v, want old %d new %d", got, tc.wantOld, tc.wantNew)
			}
		})
	}
}

func TestRollingUpdateFirstStepCreatesTheNewReplicaSetWithinMaxSurge(t *testing.T) {
	old := rsOf("web-old", "1", 10, 10, nginxTemplate("nginx:1"))
	f := newFixture(t, deploymentOf(10), old)
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	tmpl := nginxTemplate("nginx:2")
	name := "web-" + templateHash(&tmpl, nil)
	// 13 pods at most: the new one starts at 3; the 3 new pods are not
	// available, so old may go down by 13 - 8 - 3 = 2 in the same step.
	if got := f.sizes(); got["created:"+name] != 3 || got["web-old"] != 8 || len(got) != 2 {
		t.Errorf("actions %v, want %s created with 3 replicas and web-old scaled to 8", got, name)
	}
	d := f.deployment()
	cond := getCondition(d.Status, appsv1.DeploymentProgressing)
	if d.Annotations[revisionAnnotation] != "2" || cond == nil || cond.Reason != reasonReplicaSetUpdated {
		t.Errorf("deployment revision %q, progressing %+v", d.Annotations[revisionAnnotation], cond)
	}
	if ev := <-f.events.Events; ev != "Normal ScalingReplicaSet Scaled up replica set "+name+" from 0 to 3" {
		t.Errorf("first event %q", ev)
	}
}

func TestRollingUpdateScalesOldDownByAvailability(t *testing.T) {
	tmpl := nginxTemplate("nginx:2")
	newRS := rsOf("web-new", "2", 3, 3, tmpl)
	old := rsOf("web-old", "1", 10, 10, nginxTemplate("nginx:1"))
	f := newFixture(t, deploymentOf(10), old, newRS)
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	// 13 pods, 13 available, min available 8: the new one is at its
	// ceiling, so old goes down by 13-8 = 5.
	if got := f.sizes(); got["web-old"] != 5 || len(got) != 1 {
		t.Errorf("actions %v, want web-old scaled to 5", got)
	}
}

func TestRecreateScalesOldToZeroBeforeCreating(t *testing.T) {
	old := rsOf("web-old", "1", 3, 3, nginxTemplate("nginx:1"), sizedFor("3", "3"))
	d := deploymentOf(3, func(d *appsv1.Deployment) {
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	})
	f := newFixture(t, d, old)
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	if got := f.sizes(); got["web-old"] != 0 || len(got) != 1 {
		t.Errorf("actions %v, want only web-old scaled to 0", got)
	}
	for _, tc := range []struct {
		name    string
		status  appsv1.ReplicaSetStatus
		pods    []runtime.Object
		waiting bool
	}{
		{"replicas still counted", appsv1.ReplicaSetStatus{Replicas: 1, TerminatingReplicas: ptr(0)}, nil, true},
		{"pods terminating", appsv1.ReplicaSetStatus{TerminatingReplicas: ptr(2)}, nil, true},
		{"all gone", appsv1.ReplicaSetStatus{TerminatingReplicas: ptr(0)}, nil, false},
		{"no terminatingReplicas, a pod running", appsv1.ReplicaSetStatus{}, []runtime.Object{podOf("web-old", v1.PodRunning)}, true},
		{"no terminatingReplicas, pods finished", appsv1.ReplicaSetStatus{}, []runtime.Object{podOf("web-old", v1.PodSucceeded), podOf("web-old", v1.PodFailed)}, false},
		{"no terminatingReplicas, another's pod", appsv1.ReplicaSetStatus{}, []runtime.Object{podOf("someone-else", v1.PodRunning)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old0 := rsOf("web-old", "1", 0, 0, nginxTemplate("nginx:1"), sizedFor("3", "3"))
			old0.Status = tc.status
			f := newFixture(t, append([]runtime.Object{d, old0}, tc.pods...)...)
			if err := f.c.sync(context.Background(), "ns/web"); err != nil {
				t.Fatal(err)
			}
			created := len(f.sizes()) > 0
			if created == tc.waiting {
				t.Errorf("new replica set created: %v (actions %v), want %v", created, f.sizes(), !tc.waiting)
			}
		})
	}
}

func ptr(n int32) *int32 { return &n }

// podOf is a pod of phase controlled by the ReplicaSet uid (= its name in
// these tests).
func podOf(uid string, phase v1.PodPhase) *v1.Pod {
	yes := true
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: uid + "-" + string(phase), Namespace: "ns", Labels: map[string]string{"app": "nginx"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: uid, UID: types.UID(uid), Controller: &yes}},
		},
		Status: v1.PodStatus{Phase: phase},
	}
}

func TestCleanupKeepsRevisionHistoryLimit(t *testing.T) {
	tmpl := nginxTemplate("nginx:5")
	rss := []runtime.Object{
		rsOf("r1", "1", 0, 0, nginxTemplate("nginx:1")),
		rsOf("r2", "2", 0, 0, nginxTemplate("nginx:2")),
		rsOf("r3", "3", 0, 0, nginxTemplate("nginx:3"), func(rs *appsv1.ReplicaSet) { rs.Generation = 2 }), // not synced yet
		rsOf("r4", "4", 0, 0, nginxTemplate("nginx:4")),
		rsOf("r5", "5", 2, 2, tmpl, func(rs *appsv1.ReplicaSet) {
			rs.Annotations[desiredReplicasAnnotation] = "2"
			rs.Annotations[maxReplicasAnnotation] = "3"
		}),
	}
	one := int32(1)
	d := deploymentOf(2, func(d *appsv1.Deployment) {
		d.Spec.Template = tmpl
		d.Spec.RevisionHistoryLimit = &one
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}
	})
	f := newFixture(t, append([]runtime.Object{d}, rss...)...)
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "delete" {
			deleted = append(deleted, a.(k8stesting.DeleteAction).GetName())
		}
	}
	if strings.Join(deleted, ",") != "r1,r2" {
		t.Errorf("deleted %v, want r1,r2 (r3 is not synced, r4 is kept)", deleted)
	}
}

func TestProgressingConditions(t *testing.T) {
	for _, tc := range []struct {
		name       string
		prev       appsv1.DeploymentStatus
		available  int32
		elapsed    time.Duration
		wantReason string
	}{
		{"progress", appsv1.DeploymentStatus{Replicas: 13, UpdatedReplicas: 3, ReadyReplicas: 10, AvailableReplicas: 10}, 1, time.Minute, reasonReplicaSetUpdated},
		{"no progress within the deadline", appsv1.DeploymentStatus{Replicas: 13, UpdatedReplicas: 3, ReadyReplicas: 10, AvailableReplicas: 10}, 0, time.Minute, reasonReplicaSetUpdated},
		{"no progress past the deadline", appsv1.DeploymentStatus{Replicas: 13, UpdatedReplicas: 3, ReadyReplicas: 10, AvailableReplicas: 10}, 0, 11 * time.Minute, reasonTimedOut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newRS := rsOf("web-new", "2", 3, tc.available, nginxTemplate("nginx:2"))
			old := rsOf("web-old", "1", 10, 10, nginxTemplate("nginx:1"))
			d := deploymentOf(10, func(d *appsv1.Deployment) {
				d.Status = tc.prev
				d.Status.ObservedGeneration = 1
				d.Status.Conditions = []appsv1.DeploymentCondition{newCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, reasonReplicaSetUpdated, "x", now)}
			})
			f := newFixture(t, d, old, newRS)
			f.clock.Step(tc.elapsed)
			st := calculateStatus([]*appsv1.ReplicaSet{old, newRS}, newRS, d, f.clock.Now())
			cur := getCondition(d.Status, appsv1.DeploymentProgressing)
			f.c.setProgressing(d, &st, newRS, cur, f.clock.Now())
			got := getCondition(st, appsv1.DeploymentProgressing)
			if got.Reason != tc.wantReason {
				t.Errorf("Progressing %+v, want reason %s", got, tc.wantReason)
			}
			if tc.name == "progress" && !got.LastUpdateTime.Time.Equal(f.clock.Now()) {
				t.Errorf("progress did not renew lastUpdateTime: %v", got.LastUpdateTime)
			}
		})
	}
}

func TestPauseSetsTheCondition(t *testing.T) {
	d := deploymentOf(3, func(d *appsv1.Deployment) { d.Spec.Paused = true })
	f := newFixture(t, d)
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	cond := getCondition(f.deployment().Status, appsv1.DeploymentProgressing)
	if cond == nil || cond.Reason != reasonPaused || cond.Status != v1.ConditionUnknown {
		t.Errorf("Progressing %+v, want Unknown DeploymentPaused", cond)
	}
	if got := f.sizes(); len(got) != 0 {
		t.Errorf("a paused deployment created %v", got)
	}
}

func TestParseConfig(t *testing.T) {
	if c, err := ParseConfig(nil); err != nil || c.Workers != 5 {
		t.Errorf("defaults: %+v %v", c, err)
	}
	for raw, want := range map[string]string{`{"workers": 100}`: "workers is 100", `{"burst": 1}`: `unknown field "burst"`} {
		if _, err := ParseConfig([]byte(raw)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", raw, err, want)
		}
	}
}
