package persistentvolume

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fixture is a controller over a fake API server whose caches hold the
// given objects.
type fixture struct {
	c      *controller
	client *fake.Clientset
	events *record.FakeRecorder
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	f := informers.NewSharedInformerFactory(client, 0)
	c, err := newController(client, f, slog.New(slog.NewTextHandler(io.Discard, nil)), clocktesting.NewFakeClock(t0))
	if err != nil {
		t.Fatal(err)
	}
	events := record.NewFakeRecorder(100)
	c.events, c.ephemeralEvents = events, events
	classes := f.Storage().V1().StorageClasses().Informer().GetIndexer()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *v1.PersistentVolume:
			err = c.volumes.Add(o)
		case *v1.PersistentVolumeClaim:
			err = c.claims.Add(o)
		case *v1.Pod:
			err = c.pods.Add(o)
		case *storagev1.StorageClass:
			err = classes.Add(o)
		case *storagev1.VolumeAttributesClass:
			err = c.vacs.Add(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{c: c, client: client, events: events}
}

func (f *fixture) pv(t *testing.T, name string) *v1.PersistentVolume {
	t.Helper()
	pv, err := f.client.CoreV1().PersistentVolumes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pv
}

func (f *fixture) pvc(t *testing.T, name string) *v1.PersistentVolumeClaim {
	t.Helper()
	pvc, err := f.client.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pvc
}

// drainEvents returns the events recorded so far.
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

func hasEvent(events []string, substr string) bool {
	for _, e := range events {
		if strings.Contains(e, substr) {
			return true
		}
	}
	return false
}

type pvOpt func(*v1.PersistentVolume)

func newPV(name, size string, opts ...pvOpt) *v1.PersistentVolume {
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), ResourceVersion: "1"},
		Spec: v1.PersistentVolumeSpec{
			Capacity:                      v1.ResourceList{v1.ResourceStorage: resource.MustParse(size)},
			AccessModes:                   []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        v1.PersistentVolumeSource{HostPath: &v1.HostPathVolumeSource{Path: "/data/" + name}},
		},
		Status: v1.PersistentVolumeStatus{Phase: v1.VolumeAvailable},
	}
	for _, o := range opts {
		o(pv)
	}
	return pv
}

func pvClass(c string) pvOpt { return func(pv *v1.PersistentVolume) { pv.Spec.StorageClassName = c } }
func pvModes(m ...v1.PersistentVolumeAccessMode) pvOpt {
	return func(pv *v1.PersistentVolume) { pv.Spec.AccessModes = m }
}
func pvLabels(l map[string]string) pvOpt { return func(pv *v1.PersistentVolume) { pv.Labels = l } }
func pvBlock(pv *v1.PersistentVolume)    { pv.Spec.VolumeMode = ptr.To(v1.PersistentVolumeBlock) }
func pvPhase(p v1.PersistentVolumePhase) pvOpt {
	return func(pv *v1.PersistentVolume) { pv.Status.Phase = p }
}
func pvReclaim(p v1.PersistentVolumeReclaimPolicy) pvOpt {
	return func(pv *v1.PersistentVolume) { pv.Spec.PersistentVolumeReclaimPolicy = p }
}
func pvAnn(k, v string) pvOpt {
	return func(pv *v1.PersistentVolume) { metav1.SetMetaDataAnnotation(&pv.ObjectMeta, k, v) }
}

// pvClaimRef pre-binds the volume to claim name of namespace ns (uid may
// be empty: pre-bound by name).
func pvClaimRef(name string, uid types.UID) pvOpt {
	return func(pv *v1.PersistentVolume) {
		pv.Spec.ClaimRef = &v1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: "ns", Name: name, UID: uid}
	}
}

type pvcOpt func(*v1.PersistentVolumeClaim)

func newPVC(name, size string, opts ...pvcOpt) *v1.PersistentVolumeClaim {
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), ResourceVersion: "1"},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			Resources:   v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse(size)}},
		},
		Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimPending},
	}
	for _, o := range opts {
		o(pvc)
	}
	return pvc
}

func pvcClass(c string) pvcOpt {
	return func(pvc *v1.PersistentVolumeClaim) { pvc.Spec.StorageClassName = ptr.To(c) }
}
func pvcModes(m ...v1.PersistentVolumeAccessMode) pvcOpt {
	return func(pvc *v1.PersistentVolumeClaim) { pvc.Spec.AccessModes = m }
}
func pvcSelector(l map[string]string) pvcOpt {
	return func(pvc *v1.PersistentVolumeClaim) { pvc.Spec.Selector = &metav1.LabelSelector{MatchLabels: l} }
}
func pvcVolume(name string) pvcOpt {
	return func(pvc *v1.PersistentVolumeClaim) { pvc.Spec.VolumeName = name }
}
func pvcBlock(pvc *v1.PersistentVolumeClaim) { pvc.Spec.VolumeMode = ptr.To(v1.PersistentVolumeBlock) }
func pvcAnn(k, v string) pvcOpt {
	return func(pvc *v1.PersistentVolumeClaim) { metav1.SetMetaDataAnnotation(&pvc.ObjectMeta, k, v) }
}
func pvcDeleting(pvc *v1.PersistentVolumeClaim) {
	pvc.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
	pvc.Finalizers = []string{claimProtectionFinalizer}
}

func newClass(name, provisioner string, mode storagev1.VolumeBindingMode, isDefault bool) *storagev1.StorageClass {
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0)},
		Provisioner: provisioner, VolumeBindingMode: &mode}
	if isDefault {
		sc.Annotations = map[string]string{annDefaultClass: "true"}
	}
	return sc
}

func podUsing(name, claim, node string) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name)},
		Spec: v1.PodSpec{NodeName: node, Volumes: []v1.Volume{{Name: "data",
			VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}}},
		Status: v1.PodStatus{Phase: v1.PodRunning},
	}
}
