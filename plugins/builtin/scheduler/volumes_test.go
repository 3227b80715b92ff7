package scheduler

import (
	"context"
	"strings"
	"testing"

	"github.com/jonboulle/clockwork"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-helpers/storage/volume"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/placement"
)

type volumeFixture struct {
	s             *Scheduler
	client        *fake.Clientset
	claims, pvs   cache.Indexer
	pod           *v1.Pod
	claim, claim2 *v1.PersistentVolumeClaim
	pv            *v1.PersistentVolume
}

func newVolumeFixture(t *testing.T) *volumeFixture {
	f := &volumeFixture{
		pod: &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "pod-uid"}},
		claim: &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "static", Namespace: "ns", UID: "c1", ResourceVersion: "10"},
			Spec: v1.PersistentVolumeClaimSpec{Resources: v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}}}},
		claim2: &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "dyn", Namespace: "ns", UID: "c2", ResourceVersion: "11"}},
		pv:     &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-a", ResourceVersion: "12"}},
	}
	f.client = fake.NewClientset(f.pod, f.claim, f.claim2, f.pv)
	f.claims = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	f.pvs = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, err := range []error{f.claims.Add(f.claim), f.claims.Add(f.claim2), f.pvs.Add(f.pv), pods.Add(f.pod)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	f.s = &Scheduler{client: f.client, clock: clockwork.NewFakeClock(), pods: corelisters.NewPodLister(pods),
		volumes: volumeListers{claims: corelisters.NewPersistentVolumeClaimLister(f.claims), volumes: corelisters.NewPersistentVolumeLister(f.pvs)}}
	return f
}

func (f *volumeFixture) plan() *placement.VolumePlan {
	return &placement.VolumePlan{Node: "a",
		Bindings:  []placement.VolumeBinding{{Claim: f.claim, Volume: f.pv}},
		Provision: []*v1.PersistentVolumeClaim{f.claim2}}
}

// bound is what the PersistentVolume controller (and a provisioner) make
// of a claim.
func bound(c *v1.PersistentVolumeClaim, rv string, ann map[string]string) *v1.PersistentVolumeClaim {
	c = c.DeepCopy()
	c.ResourceVersion = rv
	c.Spec.VolumeName = "some-pv"
	c.Annotations = map[string]string{volume.AnnBindCompleted: "yes"}
	for k, v := range ann {
		c.Annotations[k] = v
	}
	return c
}

// TestBindVolumes: the pre-binding writes (the volume's claimRef, the
// claim's selected node) conditioned on what was read, then the wait for
// both claims to be bound.
func TestBindVolumes(t *testing.T) {
	f := newVolumeFixture(t)
	var patches []string
	f.client.PrependReactor("patch", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchAction)
		patches = append(patches, a.GetResource().Resource+" "+string(p.GetPatch()))
		return false, nil, nil
	})
	// The controllers' work, visible once the writes are done.
	pv := f.pv.DeepCopy()
	pv.ResourceVersion = "20"
	pv.Spec.ClaimRef = &v1.ObjectReference{Namespace: "ns", Name: "static", UID: "c1"}
	_ = f.pvs.Update(pv)
	_ = f.claims.Update(bound(f.claim, "21", nil))
	_ = f.claims.Update(bound(f.claim2, "22", map[string]string{volume.AnnSelectedNode: "a"}))

	if err := f.s.bindVolumes(context.Background(), f.pod, f.plan()); err != nil {
		t.Fatal(err)
	}
	if len(patches) != 2 {
		t.Fatalf("patches %q", patches)
	}
	for _, want := range []string{`"resourceVersion":"12"`, `"claimRef":{`, `"uid":"c1"`, `"pv.kubernetes.io/bound-by-controller":"yes"`} {
		if !strings.Contains(patches[0], want) {
			t.Errorf("volume patch %s lacks %s", patches[0], want)
		}
	}
	for _, want := range []string{`"resourceVersion":"11"`, `"volume.kubernetes.io/selected-node":"a"`} {
		if !strings.Contains(patches[1], want) {
			t.Errorf("claim patch %s lacks %s", patches[1], want)
		}
	}
}

// TestBindVolumesFails: a provisioner that gives up (drops the selected
// node) and a volume whose claimRef was reset fail the binding, so the pod
// is placed again.
func TestBindVolumesFails(t *testing.T) {
	cases := []struct {
		name  string
		setup func(f *volumeFixture)
		want  string
	}{
		{"provisioning failed", func(f *volumeFixture) {
			pv := f.pv.DeepCopy()
			pv.ResourceVersion = "99"
			pv.Spec.ClaimRef = &v1.ObjectReference{Namespace: "ns", Name: "static", UID: "c1"}
			_ = f.pvs.Update(pv)
			_ = f.claims.Update(bound(f.claim, "98", nil))
			dropped := f.claim2.DeepCopy()
			dropped.ResourceVersion = "97"
			_ = f.claims.Update(dropped)
		}, `provisioning failed for PVC "dyn"`},
		{"claimRef reset", func(f *volumeFixture) {
			pv := f.pv.DeepCopy()
			pv.ResourceVersion = "99"
			_ = f.pvs.Update(pv)
		}, `ClaimRef got reset for pv "pv-a"`},
		{"pod deleted", func(f *volumeFixture) {
			f.s.pods = corelisters.NewPodLister(cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}))
		}, "does not exist any more"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newVolumeFixture(t)
			tc.setup(f)
			err := f.s.bindVolumes(context.Background(), f.pod, f.plan())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestVolumeAssumptions: choices are held until the pod's binding ends.
func TestVolumeAssumptions(t *testing.T) {
	f := newVolumeFixture(t)
	a := newVolumeAssumptions()
	a.assume("pod-uid", f.plan())
	a.assume("other", &placement.VolumePlan{Node: "b", Provision: []*v1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "ns"}}}})
	if n, ok := a.ClaimNode("ns/dyn"); !a.VolumeTaken("pv-a") || !ok || n != "a" {
		t.Fatalf("assumptions not held: %+v", a)
	}
	a.release("pod-uid")
	if _, ok := a.ClaimNode("ns/dyn"); a.VolumeTaken("pv-a") || ok {
		t.Errorf("released choices still held: %+v", a)
	}
	if n, ok := a.ClaimNode("ns/x"); !ok || n != "b" {
		t.Error("another pod's choice was released")
	}
}
