package localpath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"k8s.io/component-helpers/storage/volume"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/sdk"
	"github.com/keelson/keelson/plugins/sdk/localstorage"
)

// fakeStorage records the directories it was asked to make (with their
// capacity in bytes) and remove, and answers state for the made ones.
type fakeStorage struct {
	ensured []string
	removed []string
	state   localstorage.VolumeState
	err     error
}

func (f *fakeStorage) EnsureVolume(_ context.Context, node *v1.Node, name string, capacity int64) (localstorage.VolumeState, error) {
	if f.err != nil {
		return localstorage.VolumeState{}, f.err
	}
	f.ensured = append(f.ensured, fmt.Sprintf("%s:%s=%d", node.Name, name, capacity))
	return f.state, nil
}

func (f *fakeStorage) RemoveVolume(_ context.Context, node *v1.Node, name string) error {
	if f.err != nil {
		return f.err
	}
	f.removed = append(f.removed, node.Name+":"+name)
	return nil
}

type fixture struct {
	c       *controller
	client  *fake.Clientset
	storage *fakeStorage
	events  *record.FakeRecorder
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	f := informers.NewSharedInformerFactory(client, 0)
	storage := &fakeStorage{}
	c, err := newController(client, f, storage, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	events := record.NewFakeRecorder(100)
	c.events = events
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *v1.PersistentVolume:
			err = f.Core().V1().PersistentVolumes().Informer().GetIndexer().Add(o)
		case *v1.PersistentVolumeClaim:
			err = f.Core().V1().PersistentVolumeClaims().Informer().GetIndexer().Add(o)
		case *v1.Node:
			err = f.Core().V1().Nodes().Informer().GetIndexer().Add(o)
		case *storagev1.StorageClass:
			err = f.Storage().V1().StorageClasses().Informer().GetIndexer().Add(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{c: c, client: client, storage: storage, events: events}
}

func (f *fixture) drainEvents() string {
	var out []string
	for {
		select {
		case e := <-f.events.Events:
			out = append(out, e)
		default:
			return strings.Join(out, "\n")
		}
	}
}

func node(name, dir string) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelHostname: name}}}
	if dir != "" {
		n.Annotations = map[string]string{localstorage.StorageDirAnnotation: dir}
	}
	return n
}

func claim(opts ...func(*v1.PersistentVolumeClaim)) *v1.PersistentVolumeClaim {
	c := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "ns", UID: "1234", ResourceVersion: "7",
			Annotations: map[string]string{volume.AnnStorageProvisioner: localstorage.Provisioner, volume.AnnSelectedNode: "n1"}},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			StorageClassName: ptr.To(ClassName),
			Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("64Mi")}},
		},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// TestProvision: the volume made for a claim once its node is known.
func TestProvision(t *testing.T) {
	f := newFixture(t, DefaultClass(), node("n1", "/var/lib/keelson/storage"), claim())
	f.storage.state = localstorage.VolumeState{CapacityEnforced: true, Enforcement: "btrfs-qgroup"}
	if _, err := f.c.syncClaim(context.Background(), "ns/data"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"n1:pvc-1234=67108864"}; !slices.Equal(f.storage.ensured, want) {
		t.Errorf("node asked for %v, want %v", f.storage.ensured, want)
	}
	pv, err := f.client.CoreV1().PersistentVolumes().Get(context.Background(), "pvc-1234", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no volume provisioned: %v (events %s)", err, f.drainEvents())
	}
	if pv.Spec.Local == nil || pv.Spec.Local.Path != "/var/lib/keelson/storage/pvc-1234" {
		t.Errorf("local source %+v, want the node's storage dir / volume name", pv.Spec.Local)
	}
	if err := volume.CheckNodeAffinity(pv, map[string]string{v1.LabelHostname: "n1"}); err != nil {
		t.Errorf("volume not pinned to n1: %v", err)
	}
	if volume.CheckNodeAffinity(pv, map[string]string{v1.LabelHostname: "n2"}) == nil {
		t.Error("volume usable on n2")
	}
	ref := pv.Spec.ClaimRef
	if ref == nil || ref.UID != "1234" || ref.Name != "data" || ref.Namespace != "ns" {
		t.Errorf("claimRef %+v, want the claim", ref)
	}
	q := pv.Spec.Capacity[v1.ResourceStorage]
	if q.String() != "64Mi" || pv.Spec.StorageClassName != ClassName || pv.Spec.PersistentVolumeReclaimPolicy != v1.PersistentVolumeReclaimDelete {
		t.Errorf("capacity %s class %q reclaim %s", q.String(), pv.Spec.StorageClassName, pv.Spec.PersistentVolumeReclaimPolicy)
	}
	if pv.Annotations[volume.AnnDynamicallyProvisioned] != localstorage.Provisioner || pv.Annotations[localstorage.NodeAnnotation] != "n1" ||
		pv.Annotations[localstorage.AnnCapacityEnforced] != "true" || pv.Annotations[localstorage.AnnCapacityEnforcement] != "btrfs-qgroup" {
		t.Errorf("annotations %v", pv.Annotations)
	}
	if !slices.Contains(pv.Finalizers, finalizer) {
		t.Errorf("finalizers %v, want %s", pv.Finalizers, finalizer)
	}
	if ev := f.drainEvents(); !strings.Contains(ev, "ProvisioningSucceeded Successfully provisioned volume pvc-1234") {
		t.Errorf("events %s", ev)
	}
}

// TestProvisionWaitsOrRefuses: claims this provisioner leaves alone,
// refuses, or sends back to the scheduler.
func TestProvisionWaitsOrRefuses(t *testing.T) {
	noNode := func(c *v1.PersistentVolumeClaim) { delete(c.Annotations, volume.AnnSelectedNode) }
	cases := []struct {
		name        string
		claim       *v1.PersistentVolumeClaim
		objs        []runtime.Object
		event       string
		terminal    bool
		rescheduled bool
	}{
		{name: "no node chosen yet", claim: claim(noNode)},
		{name: "another provisioner's claim", claim: claim(func(c *v1.PersistentVolumeClaim) { c.Annotations[volume.AnnStorageProvisioner] = "example.com/x" })},
		{name: "already bound", claim: claim(func(c *v1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv" })},
		{name: "block mode", claim: claim(func(c *v1.PersistentVolumeClaim) { c.Spec.VolumeMode = ptr.To(v1.PersistentVolumeBlock) }),
			event: "volumeMode Block is not supported", terminal: true},
		{name: "immediate class", claim: claim(noNode), objs: []runtime.Object{func() *storagev1.StorageClass {
			sc := DefaultClass()
			sc.VolumeBindingMode = ptr.To(storagev1.VolumeBindingImmediate)
			return sc
		}()}, event: "give StorageClass \"local-path\" volumeBindingMode WaitForFirstConsumer", terminal: true},
		{name: "selected node gone", claim: claim(func(c *v1.PersistentVolumeClaim) { c.Annotations[volume.AnnSelectedNode] = "gone" }),
			event: `the selected node "gone" does not exist`, rescheduled: true},
		{name: "node without an agent", claim: claim(func(c *v1.PersistentVolumeClaim) { c.Annotations[volume.AnnSelectedNode] = "kwok" }),
			event: "runs no Keelson agent", rescheduled: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := append([]runtime.Object{node("n1", "/s"), node("kwok", ""), tc.claim}, tc.objs...)
			if len(tc.objs) == 0 {
				objs = append(objs, DefaultClass())
			}
			f := newFixture(t, objs...)
			_, err := f.c.syncClaim(context.Background(), "ns/data")
			if got := sdk.IsTerminal(err); got != tc.terminal {
				t.Errorf("error %v terminal %v, want %v", err, got, tc.terminal)
			}
			if !tc.terminal && err != nil {
				t.Fatal(err)
			}
			if _, err := f.client.CoreV1().PersistentVolumes().Get(context.Background(), "pvc-1234", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("a volume was provisioned (%v)", err)
			}
			ev := f.drainEvents()
			if tc.event == "" && ev != "" || !strings.Contains(ev, tc.event) {
				t.Errorf("events %q, want %q", ev, tc.event)
			}
			c, _ := f.client.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "data", metav1.GetOptions{})
			if _, selected := c.Annotations[volume.AnnSelectedNode]; tc.rescheduled == selected && tc.claim.Annotations[volume.AnnSelectedNode] != "" {
				t.Errorf("selected node kept %v, want rescheduled %v", selected, tc.rescheduled)
			}
		})
	}
}

// unenforced is what a node whose filesystem cannot bound a directory
// answers.
var unenforced = localstorage.VolumeState{Reason: "the storage directory's filesystem offers no per-directory limit"}

func provisioned(phase v1.PersistentVolumePhase, opts ...func(*v1.PersistentVolume)) *v1.PersistentVolume {
	pv := newVolume(claim(), DefaultClass(), node("n1", "/s"), "/s", unenforced)
	pv.UID = "pv-uid"
	pv.Status.Phase = phase
	for _, o := range opts {
		o(pv)
	}
	return pv
}

func deleting(pv *v1.PersistentVolume) { pv.DeletionTimestamp = ptr.To(metav1.Now()) }
func retained(pv *v1.PersistentVolume) {
	pv.Spec.PersistentVolumeReclaimPolicy = v1.PersistentVolumeReclaimRetain
}

// TestReclaim: a provisioned volume's directory goes before its object.
func TestReclaim(t *testing.T) {
	cases := []struct {
		name       string
		pv         *v1.PersistentVolume
		node       *v1.Node
		storageErr error
		removed    bool
		gone       bool // the object was deleted
		finalizer  bool // still held
		event      string
	}{
		{name: "released with Delete", pv: provisioned(v1.VolumeReleased), node: node("n1", "/s"), removed: true, gone: true},
		{name: "bound stays", pv: provisioned(v1.VolumeBound), node: node("n1", "/s"), finalizer: true},
		{name: "released with Retain stays", pv: provisioned(v1.VolumeReleased, retained), node: node("n1", "/s")},
		{name: "node unreachable: kept for a retry", pv: provisioned(v1.VolumeReleased), node: node("n1", "/s"),
			storageErr: errors.New("connection refused"), finalizer: true, event: "VolumeFailedDelete connection refused"},
		{name: "node gone: let go with a warning", pv: provisioned(v1.VolumeReleased), gone: true,
			event: `node "n1" no longer exists: the directory /s/pvc-1234 could not be removed`},
		{name: "deleted by hand while bound: held", pv: provisioned(v1.VolumeBound, deleting), node: node("n1", "/s"), finalizer: true},
		{name: "deleted by hand once released: directory, then finalizer", pv: provisioned(v1.VolumeReleased, deleting), node: node("n1", "/s"), removed: true},
		{name: "deleted by hand with Retain: nothing to remove", pv: provisioned(v1.VolumeReleased, deleting, retained, func(pv *v1.PersistentVolume) {
			pv.Finalizers = []string{finalizer}
		}), node: node("n1", "/s")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := []runtime.Object{tc.pv}
			if tc.node != nil {
				objs = append(objs, tc.node)
			}
			f := newFixture(t, objs...)
			f.storage.err = tc.storageErr
			_, err := f.c.syncVolume(context.Background(), tc.pv.Name)
			if (err != nil) != (tc.storageErr != nil) {
				t.Fatalf("error %v", err)
			}
			if got := len(f.storage.removed) == 1 && f.storage.removed[0] == "n1:pvc-1234"; got != tc.removed {
				t.Errorf("removed %v, want %v", f.storage.removed, tc.removed)
			}
			pv, err := f.client.CoreV1().PersistentVolumes().Get(context.Background(), tc.pv.Name, metav1.GetOptions{})
			if gone := apierrors.IsNotFound(err); gone != tc.gone {
				t.Fatalf("object gone %v, want %v", gone, tc.gone)
			}
			if !tc.gone && slices.Contains(pv.Finalizers, finalizer) != tc.finalizer {
				t.Errorf("finalizers %v, want held %v", pv.Finalizers, tc.finalizer)
			}
			if ev := f.drainEvents(); !strings.Contains(ev, tc.event) {
				t.Errorf("events %q, want %q", ev, tc.event)
			}
		})
	}
}

// TestDefaultClass: created when missing, an existing one left alone.
func TestDefaultClass(t *testing.T) {
	f := newFixture(t)
	if _, err := f.c.ensureClass(context.Background(), ClassName); err != nil {
		t.Fatal(err)
	}
	sc, err := f.client.StorageV1().StorageClasses().Get(context.Background(), ClassName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Provisioner != localstorage.Provisioner || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer ||
		*sc.ReclaimPolicy != v1.PersistentVolumeReclaimDelete || !*sc.AllowVolumeExpansion || sc.Annotations[annDefaultClass] != "true" {
		t.Errorf("class %+v", sc)
	}
	edited := DefaultClass()
	edited.Annotations = nil
	f = newFixture(t, edited)
	if _, err := f.c.ensureClass(context.Background(), ClassName); err != nil {
		t.Fatal(err)
	}
	if sc, _ := f.client.StorageV1().StorageClasses().Get(context.Background(), ClassName, metav1.GetOptions{}); sc.Annotations[annDefaultClass] != "" {
		t.Error("the administrator's class was changed")
	}
}

// TestResize: a larger request on a bound claim of a provisioned volume
// goes to the volume's capacity and the claim's status; other volumes are
// not this resizer's.
func TestResize(t *testing.T) {
	bound := func(pvName string) *v1.PersistentVolumeClaim {
		return claim(func(c *v1.PersistentVolumeClaim) {
			c.Spec.VolumeName = pvName
			c.Spec.Resources.Requests[v1.ResourceStorage] = resource.MustParse("128Mi")
			c.Status.Phase = v1.ClaimBound
			c.Status.Capacity = v1.ResourceList{v1.ResourceStorage: resource.MustParse("64Mi")}
		})
	}
	// The node cannot raise the bound: the claim waits, with a warning.
	f := newFixture(t, bound("pvc-1234"), provisioned(v1.VolumeBound))
	if _, err := f.c.syncClaim(context.Background(), "ns/data"); err == nil {
		t.Fatal("resized without the volume's node")
	}
	if ev := f.drainEvents(); !strings.Contains(ev, `VolumeResizeFailed resize volume "pvc-1234"`) || !strings.Contains(ev, `"n1"`) {
		t.Errorf("events %q, want VolumeResizeFailed naming the node", ev)
	}
	if pv, _ := f.client.CoreV1().PersistentVolumes().Get(context.Background(), "pvc-1234", metav1.GetOptions{}); pv.Spec.Capacity.Storage().String() != "64Mi" {
		t.Errorf("volume capacity %s before the node raised the bound", pv.Spec.Capacity.Storage())
	}

	f = newFixture(t, bound("pvc-1234"), provisioned(v1.VolumeBound), node("n1", "/s"))
	f.storage.state = localstorage.VolumeState{CapacityEnforced: true, Enforcement: "btrfs-qgroup"}
	if _, err := f.c.syncClaim(context.Background(), "ns/data"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"n1:pvc-1234=134217728"}; !slices.Equal(f.storage.ensured, want) {
		t.Errorf("node asked for %v, want %v", f.storage.ensured, want)
	}
	pv, _ := f.client.CoreV1().PersistentVolumes().Get(context.Background(), "pvc-1234", metav1.GetOptions{})
	if q := pv.Spec.Capacity[v1.ResourceStorage]; q.String() != "128Mi" {
		t.Errorf("volume capacity %s, want 128Mi", q.String())
	}
	c, _ := f.client.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "data", metav1.GetOptions{})
	if q := c.Status.Capacity[v1.ResourceStorage]; q.String() != "128Mi" {
		t.Errorf("claim capacity %s, want 128Mi", q.String())
	}
	if q := c.Status.AllocatedResources[v1.ResourceStorage]; q.String() != "128Mi" || len(c.Status.AllocatedResourceStatuses) != 0 || len(c.Status.Conditions) != 0 {
		t.Errorf("claim status %+v: want 128Mi allocated, no resize in progress", c.Status)
	}
	if ev := f.drainEvents(); !strings.Contains(ev, "Resizing External resizer is resizing volume pvc-1234") || !strings.Contains(ev, "VolumeResizeSuccessful") {
		t.Errorf("events %q", ev)
	}
	if pv.Annotations[localstorage.AnnCapacityEnforced] != "true" || pv.Annotations[localstorage.AnnCapacityEnforcement] != "btrfs-qgroup" {
		t.Errorf("volume annotations %v: the node's answer must be said", pv.Annotations)
	}

	foreign := newVolume(claim(), DefaultClass(), node("n1", "/s"), "/s", unenforced)
	foreign.Name, foreign.Annotations = "static", nil
	f = newFixture(t, bound("static"), foreign)
	if _, err := f.c.syncClaim(context.Background(), "ns/data"); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.client.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "data", metav1.GetOptions{}); c.Status.Capacity.Storage().String() != "64Mi" {
		t.Errorf("another provisioner's volume was resized")
	}
}
