package garbagecollector

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata/fake"
	"k8s.io/client-go/metadata/metadatainformer"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/lru"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/sdk"
)

var (
	pods     = &resource{gvr: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, kind: "Pod", namespaced: true, verbs: allVerbs}
	rsets    = &resource{gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}, kind: "ReplicaSet", namespaced: true, verbs: allVerbs}
	widgets  = &resource{gvr: schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}, kind: "Widget", namespaced: true, verbs: allVerbs}
	roles    = &resource{gvr: schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, kind: "ClusterRole", verbs: allVerbs}
	allVerbs = []string{"get", "list", "watch", "delete", "patch"}
	testRes  = []*resource{pods, rsets, widgets, roles}
)

// obj is an object of r as the caches and the fake API hold it.
func obj(r *resource, ns, name, uid string, owners ...metav1.OwnerReference) *metav1.PartialObjectMetadata {
	if !r.namespaced {
		ns = ""
	}
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: r.gvr.GroupVersion().String(), Kind: r.kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), ResourceVersion: "1", OwnerReferences: owners},
	}
}

func ref(r *resource, name, uid string, block bool) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: r.gvr.GroupVersion().String(), Kind: r.kind, Name: name, UID: types.UID(uid), BlockOwnerDeletion: ptr.To(block)}
}

func deleting(o *metav1.PartialObjectMetadata, finalizers ...string) *metav1.PartialObjectMetadata {
	now := metav1.Now()
	o.DeletionTimestamp = &now
	o.Finalizers = finalizers
	return o
}

type fixture struct {
	gc       *collector
	api      *fake.FakeMetadataClient
	recorder *record.FakeRecorder
}

// newFixture builds a collector whose caches hold cached and whose API
// holds live (objects may differ between the two, as they do when a cache
// lags).
func newFixture(t testing.TB, cached, live []*metav1.PartialObjectMetadata) *fixture {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, r := range testRes {
		gv := r.gvr.GroupVersion()
		scheme.AddKnownTypeWithName(gv.WithKind(r.kind), &metav1.PartialObjectMetadata{})
		scheme.AddKnownTypeWithName(gv.WithKind(r.kind+"List"), &metav1.PartialObjectMetadataList{})
	}
	api := fake.NewSimpleMetadataClient(scheme)
	resOf := func(o *metav1.PartialObjectMetadata) *resource {
		for _, r := range testRes {
			if r.kind == o.Kind {
				return r
			}
		}
		t.Fatalf("no resource for kind %q", o.Kind)
		return nil
	}
	for _, o := range live {
		if err := api.Tracker().Create(resOf(o).gvr, o.DeepCopy(), o.Namespace); err != nil {
			t.Fatal(err)
		}
	}
	ms := &monitors{client: api, logger: discard(), byGR: map[schema.GroupResource]*monitor{}, kinds: map[schema.GroupKind]*resource{}}
	for _, r := range testRes {
		inf := metadatainformer.NewFilteredMetadataInformer(api, r.gvr, "", 0, indexers, nil).Informer()
		ms.byGR[r.gvr.GroupResource()] = &monitor{resource: *r, informer: inf, hasSynced: func() bool { return true }, stop: func() {}, started: time.Now()}
		ms.kinds[schema.GroupKind{Group: r.gvr.Group, Kind: r.kind}] = r
	}
	for _, o := range cached {
		if err := ms.byGR[resOf(o).gvr.GroupResource()].informer.GetIndexer().Add(o.DeepCopy()); err != nil {
			t.Fatal(err)
		}
	}
	rec := record.NewFakeRecorder(10)
	return &fixture{
		gc: &collector{client: api, monitors: ms, queue: sdk.NewQueue[objectKey]("test"), recorder: rec,
			absent: lru.New(10), crdChanged: make(chan struct{}, 1), logger: discard()},
		api: api, recorder: rec,
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func keyOf(r *resource, o *metav1.PartialObjectMetadata) objectKey {
	return objectKey{resource: r.gvr.GroupResource(), namespace: o.Namespace, name: o.Name, uid: o.UID}
}

// writes renders the API writes the collector made: "delete pods ns/name
// Background", "patch pods ns/name {...}".
func (f *fixture) writes() []string {
	var out []string
	for _, a := range f.api.Actions() {
		switch a := a.(type) {
		case clienttesting.DeleteAction:
			policy := ""
			if p := a.GetDeleteOptions().PropagationPolicy; p != nil {
				policy = string(*p)
			}
			out = append(out, "delete "+a.GetResource().Resource+" "+a.GetNamespace()+"/"+a.GetName()+" "+policy)
		case clienttesting.PatchAction:
			var p map[string]map[string]json.RawMessage
			_ = json.Unmarshal(a.GetPatch(), &p)
			delete(p["metadata"], "uid")
			delete(p["metadata"], "resourceVersion")
			body, _ := json.Marshal(p["metadata"])
			out = append(out, "patch "+a.GetResource().Resource+" "+a.GetNamespace()+"/"+a.GetName()+" "+string(body))
		}
	}
	return out
}

func TestCollect(t *testing.T) {
	rs := obj(rsets, "ns", "web", "rs-1")
	tests := []struct {
		name         string
		item         *metav1.PartialObjectMetadata
		itemRes      *resource
		cached, live []*metav1.PartialObjectMetadata
		want         []string
		wantEvent    string
	}{
		{
			name: "owner alive in the cache: nothing, not even a read",
			item: obj(pods, "ns", "p", "p-1", ref(rsets, "web", "rs-1", true)), itemRes: pods,
			cached: []*metav1.PartialObjectMetadata{rs},
		},
		{
			name: "owner gone: deleted in the background",
			item: obj(pods, "ns", "p", "p-1", ref(rsets, "web", "rs-1", true)), itemRes: pods,
			want: []string{"delete pods ns/p Background"},
		},
		{
			name: "owner not cached yet but alive: kept",
			item: obj(pods, "ns", "p", "p-1", ref(rsets, "web", "rs-1", true)), itemRes: pods,
			live: []*metav1.PartialObjectMetadata{rs},
		},
		{
			name: "owner recreated under the same name: the old one is gone",
			item: obj(pods, "ns", "p", "p-1", ref(rsets, "web", "rs-0", true)), itemRes: pods,
			cached: []*metav1.PartialObjectMetadata{rs}, live: []*metav1.PartialObjectMetadata{rs},
			want: []string{"delete pods ns/p Background"},
		},
		{
			name: "one owner left: only the dangling reference goes",
			item: obj(pods, "ns", "p", "p-1", ref(rsets, "web", "rs-1", false), ref(widgets, "w", "w-1", false)), itemRes: pods,
			cached: []*metav1.PartialObjectMetadata{rs},
			want:   []string{`patch pods ns/p {"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web","uid":"rs-1","blockOwnerDeletion":false}]}`},
		},
		{
			name: "orphan finalizer on the dependent is honoured",
			item: deleting(obj(pods, "ns", "p", "p-1", ref(rsets, "web", "rs-1", true)), metav1.FinalizerOrphanDependents), itemRes: pods,
			// Not being deleted yet in this case: only the finalizer.
			want: []string{"delete pods ns/p Orphan"},
		},
		{
			name: "owner deleting its dependents, dependent without dependents: background",
			item: obj(pods, "ns", "p", "p-1", ref(rsets, "web", "rs-1", true)), itemRes: pods,
			cached: []*metav1.PartialObjectMetadata{deleting(obj(rsets, "ns", "web", "rs-1"), metav1.FinalizerDeleteDependents)},
			want:   []string{"delete pods ns/p Background"},
		},
		{
			name: "owner deleting its dependents, dependent with dependents: foreground",
			item: obj(rsets, "ns", "web", "rs-1", ref(widgets, "w", "w-1", true)), itemRes: rsets,
			cached: []*metav1.PartialObjectMetadata{
				deleting(obj(widgets, "ns", "w", "w-1"), metav1.FinalizerDeleteDependents),
				obj(pods, "ns", "p", "p-1", ref(rsets, "web", "rs-1", true)),
			},
			want: []string{"delete replicasets ns/web Foreground"},
		},
		{
			name: "owner in another namespace: treated as gone, reported",
			item: obj(pods, "other", "p", "p-1", ref(rsets, "web", "rs-1", true)), itemRes: pods,
			cached: []*metav1.PartialObjectMetadata{rs}, live: []*metav1.PartialObjectMetadata{rs},
			want:      []string{"delete pods other/p Background"},
			wantEvent: "Warning OwnerRefInvalidNamespace",
		},
		{
			name: "cluster-scoped dependent of a namespaced owner: left alone, reported",
			item: obj(roles, "", "r", "r-1", ref(rsets, "web", "rs-1", true)), itemRes: roles,
			cached:    []*metav1.PartialObjectMetadata{rs},
			wantEvent: "Warning OwnerRefInvalidNamespace",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			item := tc.item
			if tc.name == "orphan finalizer on the dependent is honoured" {
				item = tc.item.DeepCopy()
				item.DeletionTimestamp = nil
			}
			f := newFixture(t, append(tc.cached, item), append(tc.live, item))
			if _, err := f.gc.reconcile(context.Background(), keyOf(tc.itemRes, item)); err != nil {
				t.Fatal(err)
			}
			if got := f.writes(); !slices.Equal(got, tc.want) {
				t.Errorf("writes %q, want %q", got, tc.want)
			}
			if tc.name == "owner alive in the cache: nothing, not even a read" && len(f.api.Actions()) != 0 {
				t.Errorf("API calls %v for an object whose owner is cached and alive", f.api.Actions())
			}
			select {
			case e := <-f.recorder.Events:
				if tc.wantEvent == "" || !strings.HasPrefix(e, tc.wantEvent) {
					t.Errorf("event %q, want %q", e, tc.wantEvent)
				}
			default:
				if tc.wantEvent != "" {
					t.Errorf("no event, want %q", tc.wantEvent)
				}
			}
		})
	}
}

func TestOrphanDependents(t *testing.T) {
	owner := deleting(obj(rsets, "ns", "web", "rs-1"), metav1.FinalizerOrphanDependents, "other/finalizer")
	a := obj(pods, "ns", "a", "a-1", ref(rsets, "web", "rs-1", true))
	b := obj(pods, "ns", "b", "b-1", ref(rsets, "web", "rs-1", true), ref(widgets, "w", "w-1", false))
	all := []*metav1.PartialObjectMetadata{owner, a, b}
	f := newFixture(t, all, all)
	if _, err := f.gc.reconcile(context.Background(), keyOf(rsets, owner)); err != nil {
		t.Fatal(err)
	}
	got := f.writes()
	slices.Sort(got[:2]) // dependents in any order, then the owner
	want := []string{
		`patch pods ns/a {"ownerReferences":[]}`,
		`patch pods ns/b {"ownerReferences":[{"apiVersion":"example.com/v1","kind":"Widget","name":"w","uid":"w-1","blockOwnerDeletion":false}]}`,
		`patch replicasets ns/web {"finalizers":["other/finalizer"]}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("writes\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestForegroundDeletion(t *testing.T) {
	owner := deleting(obj(rsets, "ns", "web", "rs-1"), metav1.FinalizerDeleteDependents)
	blocking := obj(pods, "ns", "a", "a-1", ref(rsets, "web", "rs-1", true))
	loose := obj(pods, "ns", "b", "b-1", ref(rsets, "web", "rs-1", false))

	f := newFixture(t, []*metav1.PartialObjectMetadata{owner, blocking, loose}, []*metav1.PartialObjectMetadata{owner})
	if _, err := f.gc.reconcile(context.Background(), keyOf(rsets, owner)); err != nil {
		t.Fatal(err)
	}
	if got := f.writes(); len(got) != 0 {
		t.Errorf("owner finalized while a blocking dependent exists: %q", got)
	}
	if k, _ := f.gc.queue.Get(); k.name != "a" {
		t.Errorf("queued %v, want the blocking dependent", k)
	}

	// Only a non-blocking dependent left: the owner goes.
	f = newFixture(t, []*metav1.PartialObjectMetadata{owner, loose}, []*metav1.PartialObjectMetadata{owner})
	if _, err := f.gc.reconcile(context.Background(), keyOf(rsets, owner)); err != nil {
		t.Fatal(err)
	}
	if got, want := f.writes(), []string{`patch replicasets ns/web {"finalizers":[]}`}; !slices.Equal(got, want) {
		t.Errorf("writes %q, want %q", got, want)
	}
}

func TestUnknownOwnerKindIsRetried(t *testing.T) {
	item := obj(pods, "ns", "p", "p-1", metav1.OwnerReference{APIVersion: "later.example.com/v1", Kind: "Thing", Name: "t", UID: "t-1"})
	f := newFixture(t, []*metav1.PartialObjectMetadata{item}, []*metav1.PartialObjectMetadata{item})
	_, err := f.gc.reconcile(context.Background(), keyOf(pods, item))
	if !errors.Is(err, errUnknownKind) {
		t.Errorf("error %v, want errUnknownKind (retried until the kind is served)", err)
	}
	if got := f.writes(); len(got) != 0 {
		t.Errorf("writes %q for an owner of an unknown kind", got)
	}
}

func TestMonitorsFollowDiscovery(t *testing.T) {
	f := newFixture(t, nil, nil)
	ms := f.gc.monitors
	ms.handler = f.gc.handler
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := map[schema.GroupResource]*resource{}
	for _, r := range []*resource{pods, rsets} {
		served[r.gvr.GroupResource()] = r
	}
	served[schema.GroupResource{Resource: "events"}] = &resource{gvr: schema.GroupVersionResource{Version: "v1", Resource: "events"}, kind: "Event", namespaced: true, verbs: allVerbs}
	served[schema.GroupResource{Resource: "bindings"}] = &resource{gvr: schema.GroupVersionResource{Version: "v1", Resource: "bindings"}, kind: "Binding", namespaced: true, verbs: []string{"create"}}

	ms.sync(ctx, served, true)
	if ms.monitor(widgets.gvr.GroupResource()) == nil {
		t.Error("a partial discovery dropped the monitor of a resource it did not see")
	}
	ms.sync(ctx, served, false)
	var got []string
	for gr := range ms.byGR {
		got = append(got, gr.String())
	}
	slices.Sort(got)
	if want := []string{"pods", "replicasets.apps"}; !slices.Equal(got, want) {
		t.Errorf("monitored %v, want %v (events ignored, bindings not watchable, widgets gone)", got, want)
	}
	if _, ok := ms.kindOf("v1", "Binding"); !ok {
		t.Error("a kind that cannot be watched is still resolvable as an owner")
	}
	ms.stopAll()
}

func drain(f *fixture) []string {
	var out []string
	for f.gc.queue.Len() > 0 {
		k, _ := f.gc.queue.Get()
		f.gc.queue.Done(k)
		out = append(out, k.resource.Resource+" "+k.name)
	}
	slices.Sort(out)
	return out
}

func TestEventsQueueTheRightObjects(t *testing.T) {
	owner := obj(rsets, "ns", "web", "rs-1")
	dep := obj(pods, "ns", "p", "p-1", ref(rsets, "web", "rs-1", true))
	lone := obj(pods, "ns", "lone", "l-1")
	f := newFixture(t, []*metav1.PartialObjectMetadata{owner, dep, lone}, nil)
	m := func(r *resource) *monitor { return f.gc.monitors.monitor(r.gvr.GroupResource()) }

	f.gc.observe(m(pods), nil, lone)
	f.gc.observe(m(pods), nil, dep)
	if got, want := drain(f), []string{"pods p"}; !slices.Equal(got, want) {
		t.Errorf("added objects queued %v, want %v (only those with owners)", got, want)
	}
	bumped := dep.DeepCopy()
	bumped.ResourceVersion = "2"
	f.gc.observe(m(pods), dep, bumped)
	if got := drain(f); len(got) != 0 {
		t.Errorf("an update changing nothing the collector reads queued %v", got)
	}
	waiting := deleting(owner.DeepCopy(), metav1.FinalizerDeleteDependents)
	_ = m(rsets).informer.GetIndexer().Update(waiting)
	f.gc.observe(m(rsets), owner, waiting)
	if got, want := drain(f), []string{"pods p", "replicasets web"}; !slices.Equal(got, want) {
		t.Errorf("foreground deletion queued %v, want %v", got, want)
	}
	f.gc.observeDeletion(m(pods), dep)
	if got, want := drain(f), []string{"replicasets web"}; !slices.Equal(got, want) {
		t.Errorf("a dependent's deletion queued %v, want its waiting owner", got)
	}
	f.gc.observeDeletion(m(rsets), owner)
	if got, want := drain(f), []string{"pods p"}; !slices.Equal(got, want) {
		t.Errorf("an owner's deletion queued %v, want its dependents", got)
	}
}
