package statefulset

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
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

func newSet(replicas int32, image string, mutate ...func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "set-uid", Generation: 2},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: "nginx",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: image}}},
			},
			VolumeClaimTemplates: []v1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "www"}}},
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: new(int32)}},
			PodManagementPolicy: appsv1.OrderedReadyPodManagement,
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

type fixture struct {
	c      *controller
	client *fake.Clientset
	set    *appsv1.StatefulSet
}

func newFixture(t *testing.T, set *appsv1.StatefulSet, objs ...any) *fixture {
	t.Helper()
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
		sets: idx(nil), pods: idx(byCtl), revs: idx(byCtl), claims: idx(nil),
		exp: expectations.New(clk, expectations.DefaultTTL), events: record.NewFakeRecorder(100),
		clock: clk, logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	c.fresh = freshness.New(map[string]freshness.Cache{podsCache: c.pods, setsCache: c.sets, claimsCache: c.claims})
	client := fake.NewClientset(set)
	_ = c.sets.Add(set)
	for _, o := range objs {
		switch o := o.(type) {
		case *v1.Pod:
			_ = c.pods.Add(o)
			_ = client.Tracker().Add(o)
			// Existing members have their claims (a missing one is recreated).
			claim := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "www-" + o.Name, Namespace: o.Namespace}}
			if _, ok, _ := c.claims.Get(claim); !ok {
				_ = c.claims.Add(claim)
				_ = client.Tracker().Add(claim)
			}
		case *appsv1.ControllerRevision:
			_ = c.revs.Add(o)
			_ = client.Tracker().Add(o)
		case *v1.PersistentVolumeClaim:
			_ = c.claims.Add(o)
			_ = client.Tracker().Add(o)
		}
	}
	c.client = client
	return &fixture{c: c, client: client, set: set}
}

// revision stores set's current template as a revision and returns its name.
func revision(t *testing.T, set *appsv1.StatefulSet, number int64) *appsv1.ControllerRevision {
	t.Helper()
	data, err := history.Patch(&set.Spec.Template)
	if err != nil {
		t.Fatal(err)
	}
	hash := history.Hash(data.Raw, new(int32))
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: history.Name(set.Name, hash), Namespace: set.Namespace,
			Labels:          map[string]string{"app": "web", history.HashLabel: hash},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, kind)}},
		Data: data, Revision: number,
	}
}

func member(set *appsv1.StatefulSet, ord int, rev string, phase v1.PodPhase, ready bool) *v1.Pod {
	p := newPod(set, &set.Spec.Template, rev, ord)
	p.UID = types.UID("uid-" + p.Name)
	p.Status.Phase = phase
	st := v1.ConditionFalse
	if ready {
		st = v1.ConditionTrue
	}
	p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: st, LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))}}
	return p
}

func (f *fixture) sync(t *testing.T) {
	t.Helper()
	if _, err := f.c.reconcile(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
}

// actions returns "verb resource/name" of the writes to pods and claims.
func (f *fixture) actions() []string {
	var out []string
	for _, a := range f.client.Actions() {
		res := a.GetResource().Resource
		if res != "pods" && res != "persistentvolumeclaims" {
			continue
		}
		switch a := a.(type) {
		case k8stesting.CreateAction: // updates too: both carry the object
			m := a.GetObject().(metav1.Object)
			out = append(out, fmt.Sprintf("%s %s/%s", a.GetVerb(), res, m.GetName()))
		case k8stesting.DeleteAction:
			out = append(out, fmt.Sprintf("%s %s/%s", a.GetVerb(), res, a.GetName()))
		case k8stesting.PatchAction:
			out = append(out, fmt.Sprintf("%s %s/%s", a.GetVerb(), res, a.GetName()))
		}
	}
	return out
}

func (f *fixture) status(t *testing.T) appsv1.StatefulSetStatus {
	t.Helper()
	s, err := f.client.AppsV1().StatefulSets("ns").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Status
}

func TestSyncPods(t *testing.T) {
	parallel := func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement }
	tests := []struct {
		name string
		set  *appsv1.StatefulSet
		// pods are built from the set's template at its revision.
		pods func(set *appsv1.StatefulSet, rev string) []*v1.Pod
		want []string
	}{
		{"ordered start creates ordinal 0 and its claim first", newSet(3, "v1"), nil,
			[]string{"create persistentvolumeclaims/www-web-0", "create pods/web-0"}},
		{"ordered waits for an unready pod", newSet(3, "v1"), func(s *appsv1.StatefulSet, r string) []*v1.Pod {
			return []*v1.Pod{member(s, 0, r, v1.PodPending, false)}
		}, nil},
		{"ordered creates the next once ready", newSet(3, "v1"), func(s *appsv1.StatefulSet, r string) []*v1.Pod {
			return []*v1.Pod{member(s, 0, r, v1.PodRunning, true)}
		}, []string{"create persistentvolumeclaims/www-web-1", "create pods/web-1"}},
		{"parallel creates all", newSet(3, "v1", parallel), nil, []string{
			"create persistentvolumeclaims/www-web-0", "create pods/web-0", "create persistentvolumeclaims/www-web-1", "create pods/web-1",
			"create persistentvolumeclaims/www-web-2", "create pods/web-2"}},
		{"ordinals.start names from it", newSet(1, "v1", func(s *appsv1.StatefulSet) { s.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: 5} }), nil,
			[]string{"create persistentvolumeclaims/www-web-5", "create pods/web-5"}},
		{"failed pod is deleted to be recreated", newSet(1, "v1"), func(s *appsv1.StatefulSet, r string) []*v1.Pod {
			return []*v1.Pod{member(s, 0, r, v1.PodFailed, false)}
		}, []string{"delete pods/web-0"}},
		{"ordered scale down removes the highest ordinal only", newSet(1, "v1"), func(s *appsv1.StatefulSet, r string) []*v1.Pod {
			return []*v1.Pod{member(s, 0, r, v1.PodRunning, true), member(s, 1, r, v1.PodRunning, true), member(s, 2, r, v1.PodRunning, true)}
		}, []string{"delete pods/web-2"}},
		{"parallel scale down removes all condemned", newSet(1, "v1", parallel), func(s *appsv1.StatefulSet, r string) []*v1.Pod {
			return []*v1.Pod{member(s, 0, r, v1.PodRunning, true), member(s, 1, r, v1.PodRunning, true), member(s, 2, r, v1.PodRunning, false)}
		}, []string{"delete pods/web-2", "delete pods/web-1"}},
		{"ordered scale down waits for an unhealthy pod", newSet(1, "v1"), func(s *appsv1.StatefulSet, r string) []*v1.Pod {
			return []*v1.Pod{member(s, 0, r, v1.PodRunning, false), member(s, 1, r, v1.PodRunning, true)}
		}, nil},
		// The conformance spec "Scaling should happen in predictable order
		// and halt if any stateful pod is unhealthy": every pod unready,
		// scaled to 0; only the lowest unhealthy one could go, and it is
		// not the highest ordinal, so nothing is deleted.
		{"ordered scale down halts while lower pods are unhealthy too", newSet(0, "v1"), func(s *appsv1.StatefulSet, r string) []*v1.Pod {
			return []*v1.Pod{member(s, 0, r, v1.PodRunning, false), member(s, 1, r, v1.PodRunning, false), member(s, 2, r, v1.PodRunning, false)}
		}, nil},
		{"ordered scale down removes the one unhealthy highest pod", newSet(1, "v1"), func(s *appsv1.StatefulSet, r string) []*v1.Pod {
			return []*v1.Pod{member(s, 0, r, v1.PodRunning, true), member(s, 1, r, v1.PodRunning, false)}
		}, []string{"delete pods/web-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev := revision(t, tt.set, 1)
			objs := []any{rev}
			if tt.pods != nil {
				for _, p := range tt.pods(tt.set, rev.Name) {
					objs = append(objs, p)
				}
			}
			f := newFixture(t, tt.set, objs...)
			f.sync(t)
			if got := f.actions(); !slices.Equal(got, tt.want) {
				t.Errorf("actions\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestNewPodIdentity(t *testing.T) {
	set := newSet(3, "v1")
	f := newFixture(t, set)
	f.sync(t)
	p, err := f.client.CoreV1().Pods("ns").Get(context.Background(), "web-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.Hostname != "web-0" || p.Spec.Subdomain != "nginx" || p.Labels[podNameLabel] != "web-0" || p.Labels[podIndexLabel] != "0" ||
		p.Labels[history.HashLabel] == "" || !metav1.IsControlledBy(p, set) {
		t.Errorf("pod identity %+v %+v", p.ObjectMeta, p.Spec)
	}
	if len(p.Spec.Volumes) != 1 || p.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "www-web-0" {
		t.Errorf("volumes %+v", p.Spec.Volumes)
	}
	claim, err := f.client.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "www-web-0", metav1.GetOptions{})
	if err != nil || claim.Labels["app"] != "web" || len(claim.OwnerReferences) != 0 {
		t.Errorf("claim %+v err %v", claim, err)
	}
	if st := f.status(t); st.UpdateRevision == "" || st.CurrentRevision != st.UpdateRevision || st.ObservedGeneration != 2 {
		t.Errorf("status %+v", st)
	}
}

func TestRollingUpdate(t *testing.T) {
	tests := []struct {
		name      string
		partition int32
		maxUnav   *intstr.IntOrString
		want      []string
	}{
		{"one at a time from the top", 0, nil, []string{"delete pods/web-2"}},
		{"partition keeps lower ordinals", 2, nil, []string{"delete pods/web-2"}},
		{"partition at replicas updates none", 3, nil, nil},
		{"maxUnavailable 2", 0, ptr(intstr.FromInt32(2)), []string{"delete pods/web-2", "delete pods/web-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := newSet(3, "v1")
			oldRev := revision(t, old, 1)
			set := newSet(3, "v2", func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: &tt.partition, MaxUnavailable: tt.maxUnav}
				s.Status.CurrentRevision = oldRev.Name
			})
			objs := []any{oldRev}
			for i := range 3 {
				objs = append(objs, member(old, i, oldRev.Name, v1.PodRunning, true))
			}
			f := newFixture(t, set, objs...)
			f.sync(t)
			if got := f.actions(); !slices.Equal(got, tt.want) {
				t.Errorf("actions\n got %q\nwant %q", got, tt.want)
			}
			st := f.status(t)
			if st.CurrentRevision != oldRev.Name || st.UpdateRevision == oldRev.Name || st.CurrentReplicas != 3 || st.UpdatedReplicas != 0 || st.ReadyReplicas != 3 {
				t.Errorf("status %+v", st)
			}
		})
	}
}

func TestRecreatedOrdinalBelowPartitionKeepsCurrentRevision(t *testing.T) {
	old := newSet(2, "v1")
	oldRev := revision(t, old, 1)
	two := int32(2)
	set := newSet(2, "v2", func(s *appsv1.StatefulSet) {
		s.Spec.UpdateStrategy.RollingUpdate.Partition = &two
		s.Status.CurrentRevision = oldRev.Name
	})
	f := newFixture(t, set, oldRev, member(old, 1, oldRev.Name, v1.PodRunning, true))
	f.sync(t)
	p, err := f.client.CoreV1().Pods("ns").Get(context.Background(), "web-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Labels[history.HashLabel] != oldRev.Name || p.Spec.Containers[0].Image != "v1" {
		t.Errorf("web-0 recreated at %s with %s, want the current revision %s", p.Labels[history.HashLabel], p.Spec.Containers[0].Image, oldRev.Name)
	}
}

func TestOnDeleteLeavesOldPods(t *testing.T) {
	old := newSet(2, "v1")
	oldRev := revision(t, old, 1)
	set := newSet(2, "v2", func(s *appsv1.StatefulSet) {
		s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
		s.Status.CurrentRevision = oldRev.Name
	})
	f := newFixture(t, set, oldRev, member(old, 0, oldRev.Name, v1.PodRunning, true), member(old, 1, oldRev.Name, v1.PodRunning, true))
	f.sync(t)
	if got := f.actions(); len(got) != 0 {
		t.Errorf("OnDelete touched pods: %q", got)
	}
}

func TestClaimRetention(t *testing.T) {
	del := appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	tests := []struct {
		name       string
		policy     appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy
		wantOwners []string
	}{
		{"retain keeps the claim unowned", appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}, nil},
		{"whenScaled delete hands the claim to the pod", appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenScaled: del}, []string{"Pod/web-1"}},
		{"whenDeleted delete hands the claim to the set", appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: del}, []string{"StatefulSet/web"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := newSet(1, "v1", func(s *appsv1.StatefulSet) { s.Spec.PersistentVolumeClaimRetentionPolicy = &tt.policy })
			rev := revision(t, set, 1)
			var objs []any
			objs = append(objs, rev)
			for i := range 2 {
				objs = append(objs, member(set, i, rev.Name, v1.PodRunning, true),
					&v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("www-web-%d", i), Namespace: "ns"}})
			}
			f := newFixture(t, set, objs...)
			f.sync(t)
			claim, err := f.client.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "www-web-1", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var owners []string
			for _, r := range claim.OwnerReferences {
				owners = append(owners, r.Kind+"/"+r.Name)
			}
			if !slices.Equal(owners, tt.wantOwners) {
				t.Errorf("owners of www-web-1 %v, want %v", owners, tt.wantOwners)
			}
			if !slices.Contains(f.actions(), "delete pods/web-1") {
				t.Errorf("web-1 not deleted: %q", f.actions())
			}
		})
	}
}

func TestExpectationsHoldBackDuplicates(t *testing.T) {
	set := newSet(3, "v1", func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement })
	f := newFixture(t, set)
	f.sync(t)
	n := len(f.actions())
	f.sync(t) // the cache has not shown the pods yet
	if got := len(f.actions()); got != n {
		t.Errorf("second sync before the cache caught up wrote %d more times", got-n)
	}
}

func ptr[T any](v T) *T { return &v }

// TestSyncWaitsForItsOwnWrites: once the controller created a member and
// its claim, a sync on a claim cache older than that creation is held back
// (a retried freshness.StaleError, as upstream's
// StaleControllerConsistencyStatefulSet) and goes on once the cache has it.
func TestSyncWaitsForItsOwnWrites(t *testing.T) {
	f := newFixture(t, newSet(1, "v1"))
	rv := 10
	f.client.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rv++
		a.(k8stesting.CreateAction).GetObject().(metav1.Object).SetResourceVersion(strconv.Itoa(rv))
		return false, nil, nil
	})
	f.sync(t)
	if got := f.actions(); !slices.Contains(got, "create persistentvolumeclaims/www-web-0") || !slices.Contains(got, "create pods/web-0") {
		t.Fatalf("writes %v, want web-0 and its claim created", got)
	}
	// The claim cache has seen some claim, older than the creation.
	_ = f.c.claims.Add(&v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other", ResourceVersion: "5"}})
	if _, err := f.c.reconcile(context.Background(), "ns/web"); !freshness.IsStale(err) {
		t.Fatalf("reconcile on a claim cache behind the controller's creation: %v, want a freshness.StaleError", err)
	}
	claim, err := f.client.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "www-web-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = f.c.claims.Add(claim)
	if _, err := f.c.reconcile(context.Background(), "ns/web"); freshness.IsStale(err) {
		t.Fatalf("reconcile once the claim cache has the creation: %v", err)
	}
}
