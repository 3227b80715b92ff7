package persistentvolume

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/component-helpers/storage/volume"
)

// TestBindUnboundClaim: which volume a claim without a volumeName gets,
// table-driven over upstream's matching rules.
func TestBindUnboundClaim(t *testing.T) {
	gold := map[string]string{"tier": "gold"}
	cases := []struct {
		name  string
		claim *v1.PersistentVolumeClaim
		objs  []runtime.Object
		want  string // volume bound, "" for none
		event string // an event the claim gets
	}{
		{name: "smallest volume that is large enough",
			claim: newPVC("c", "3Gi"),
			objs:  []runtime.Object{newPV("small", "1Gi"), newPV("big", "10Gi"), newPV("mid", "5Gi")},
			want:  "mid"},
		{name: "exact access modes before a superset",
			claim: newPVC("c", "1Gi"),
			objs:  []runtime.Object{newPV("rwo-rwx", "1Gi", pvModes(v1.ReadWriteOnce, v1.ReadWriteMany)), newPV("rwo", "2Gi")},
			want:  "rwo"},
		{name: "a superset of access modes when nothing else fits",
			claim: newPVC("c", "1Gi", pvcModes(v1.ReadWriteMany)),
			objs:  []runtime.Object{newPV("rwo", "1Gi"), newPV("rwo-rwx", "5Gi", pvModes(v1.ReadWriteOnce, v1.ReadWriteMany))},
			want:  "rwo-rwx"},
		{name: "access modes the volume lacks",
			claim: newPVC("c", "1Gi", pvcModes(v1.ReadOnlyMany)),
			objs:  []runtime.Object{newPV("rwo", "1Gi")},
			event: "no persistent volumes available for this claim and no storage class is set"},
		{name: "class must match",
			claim: newPVC("c", "1Gi", pvcClass("fast")),
			objs:  []runtime.Object{newPV("none", "1Gi"), newPV("slow", "1Gi", pvClass("slow")), newPV("fast", "9Gi", pvClass("fast"))},
			want:  "fast"},
		{name: "empty class asks for a volume without class",
			claim: newPVC("c", "1Gi", pvcClass("")),
			objs: []runtime.Object{newPV("fast", "1Gi", pvClass("fast")), newPV("none", "5Gi"),
				newClass("default", "example.com/p", storagev1.VolumeBindingImmediate, true)},
			want: "none"},
		{name: "selector",
			claim: newPVC("c", "1Gi", pvcSelector(gold)),
			objs:  []runtime.Object{newPV("plain", "1Gi"), newPV("gold", "5Gi", pvLabels(gold))},
			want:  "gold"},
		{name: "volume mode",
			claim: newPVC("c", "1Gi", pvcBlock),
			objs:  []runtime.Object{newPV("fs", "1Gi"), newPV("block", "5Gi", pvBlock)},
			want:  "block"},
		{name: "a volume pre-bound to the claim wins over a smaller match",
			claim: newPVC("c", "1Gi"),
			objs:  []runtime.Object{newPV("small", "1Gi"), newPV("reserved", "8Gi", pvClaimRef("c", ""))},
			want:  "reserved"},
		{name: "a volume pre-bound to another claim is not taken",
			claim: newPVC("c", "1Gi"),
			objs:  []runtime.Object{newPV("reserved", "1Gi", pvClaimRef("other", ""))},
			event: "no persistent volumes available"},
		{name: "released volumes are not reused",
			claim: newPVC("c", "1Gi"),
			objs:  []runtime.Object{newPV("released", "1Gi", pvPhase(v1.VolumeReleased))},
			event: "no persistent volumes available"},
		{name: "WaitForFirstConsumer leaves the choice to the scheduler",
			claim: newPVC("c", "1Gi", pvcClass("local")),
			objs: []runtime.Object{newPV("local", "1Gi", pvClass("local")),
				newClass("local", volume.NotSupportedProvisioner, storagev1.VolumeBindingWaitForFirstConsumer, false)},
			event: "WaitForFirstConsumer waiting for first consumer to be created before binding"},
		{name: "WaitForFirstConsumer names the pod waiting to be scheduled",
			claim: newPVC("c", "1Gi", pvcClass("local")),
			objs: []runtime.Object{podUsing("web-0", "c", ""),
				newClass("local", volume.NotSupportedProvisioner, storagev1.VolumeBindingWaitForFirstConsumer, false)},
			event: "WaitForPodScheduled waiting for pod web-0 to be scheduled"},
		{name: "WaitForFirstConsumer still binds a pre-bound volume",
			claim: newPVC("c", "1Gi", pvcClass("local")),
			objs: []runtime.Object{newPV("local", "1Gi", pvClass("local"), pvClaimRef("c", "uid-c")),
				newClass("local", volume.NotSupportedProvisioner, storagev1.VolumeBindingWaitForFirstConsumer, false)},
			want: "local"},
		{name: "an in-tree provisioner is refused",
			claim: newPVC("c", "1Gi", pvcClass("static")),
			objs:  []runtime.Object{newClass("static", volume.NotSupportedProvisioner, storagev1.VolumeBindingImmediate, false)},
			event: "ProvisioningFailed no volume plugin matched name: kubernetes.io/no-provisioner"},
		{name: "a missing class",
			claim: newPVC("c", "1Gi", pvcClass("gone")),
			event: `ProvisioningFailed storageclass.storage.k8s.io "gone" not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, append(tc.objs, tc.claim)...)
			if _, err := f.c.syncClaimKey(context.Background(), "ns/c"); err != nil {
				t.Fatal(err)
			}
			claim := f.pvc(t, "c")
			events := f.drainEvents()
			if claim.Spec.VolumeName != tc.want {
				t.Fatalf("claim bound to %q, want %q (events %q)", claim.Spec.VolumeName, tc.want, events)
			}
			if tc.event != "" && !hasEvent(events, tc.event) {
				t.Errorf("events %q, want one with %q", events, tc.event)
			}
			if tc.want == "" {
				if claim.Status.Phase != v1.ClaimPending {
					t.Errorf("phase %s, want Pending", claim.Status.Phase)
				}
				return
			}
			checkBound(t, f, tc.want, claim)
		})
	}
}

// checkBound: both sides of a completed binding, as upstream leaves them.
func checkBound(t *testing.T, f *fixture, pvName string, claim *v1.PersistentVolumeClaim) {
	t.Helper()
	pv := f.pv(t, pvName)
	if ref := pv.Spec.ClaimRef; ref == nil || ref.Name != claim.Name || ref.Namespace != claim.Namespace || ref.UID != claim.UID || ref.Kind != "PersistentVolumeClaim" {
		t.Errorf("volume claimRef %+v, want the claim with its UID", pv.Spec.ClaimRef)
	}
	if pv.Status.Phase != v1.VolumeBound {
		t.Errorf("volume phase %s, want Bound", pv.Status.Phase)
	}
	if claim.Status.Phase != v1.ClaimBound {
		t.Errorf("claim phase %s, want Bound", claim.Status.Phase)
	}
	if claim.Annotations[volume.AnnBindCompleted] != "yes" || claim.Annotations[volume.AnnBoundByController] != "yes" {
		t.Errorf("claim annotations %v, want bind-completed and bound-by-controller", claim.Annotations)
	}
	want := pv.Spec.Capacity[v1.ResourceStorage]
	if got := claim.Status.Capacity[v1.ResourceStorage]; got.Cmp(want) != 0 || len(claim.Status.AccessModes) != len(pv.Spec.AccessModes) {
		t.Errorf("claim status capacity %v modes %v, want the volume's %v %v", claim.Status.Capacity, claim.Status.AccessModes, pv.Spec.Capacity, pv.Spec.AccessModes)
	}
}

// TestPreBoundVolumeIsMarkedByUser: a volume the user pre-bound does not
// get bound-by-controller; one the controller chose does.
func TestPreBoundVolumeIsMarkedByUser(t *testing.T) {
	f := newFixture(t, newPV("reserved", "1Gi", pvClaimRef("c", "")), newPVC("c", "1Gi"))
	if _, err := f.c.syncClaimKey(context.Background(), "ns/c"); err != nil {
		t.Fatal(err)
	}
	if pv := f.pv(t, "reserved"); metav1.HasAnnotation(pv.ObjectMeta, volume.AnnBoundByController) || pv.Spec.ClaimRef.UID != "uid-c" {
		t.Errorf("pre-bound volume %v claimRef %+v: want the claim's UID and no bound-by-controller", pv.Annotations, pv.Spec.ClaimRef)
	}
}

// TestClaimWithVolumeName: a claim that names its volume.
func TestClaimWithVolumeName(t *testing.T) {
	cases := []struct {
		name   string
		claim  *v1.PersistentVolumeClaim
		pv     *v1.PersistentVolume
		bound  bool
		event  string
		errors bool
	}{
		{name: "binds the named volume even if a selector would not match",
			claim: newPVC("c", "1Gi", pvcVolume("pv"), pvcSelector(map[string]string{"x": "y"})), pv: newPV("pv", "1Gi"), bound: true},
		{name: "too small", claim: newPVC("c", "2Gi", pvcVolume("pv")), pv: newPV("pv", "1Gi"),
			event: `VolumeMismatch Cannot bind to requested volume "pv": requested PV is too small`},
		{name: "class differs", claim: newPVC("c", "1Gi", pvcVolume("pv"), pvcClass("a")), pv: newPV("pv", "1Gi", pvClass("b")),
			event: "storageClassName does not match"},
		{name: "mode differs", claim: newPVC("c", "1Gi", pvcVolume("pv"), pvcBlock), pv: newPV("pv", "1Gi"),
			event: "incompatible volumeMode"},
		{name: "access mode missing", claim: newPVC("c", "1Gi", pvcVolume("pv"), pvcModes(v1.ReadWriteMany)), pv: newPV("pv", "1Gi"),
			event: "incompatible accessMode"},
		{name: "claimed by another claim", claim: newPVC("c", "1Gi", pvcVolume("pv")), pv: newPV("pv", "1Gi", pvClaimRef("other", "uid-other")),
			event: `FailedBinding volume "pv" already bound to a different claim.`},
		{name: "does not exist yet", claim: newPVC("c", "1Gi", pvcVolume("pv"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := []runtime.Object{tc.claim}
			if tc.pv != nil {
				objs = append(objs, tc.pv)
			}
			f := newFixture(t, objs...)
			_, err := f.c.syncClaimKey(context.Background(), "ns/c")
			if err != nil {
				t.Fatal(err)
			}
			claim := f.pvc(t, "c")
			if got := claim.Status.Phase == v1.ClaimBound; got != tc.bound {
				t.Fatalf("bound %v, want %v", got, tc.bound)
			}
			if tc.bound {
				if pv := f.pv(t, "pv"); pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != claim.UID {
					t.Errorf("volume claimRef %+v", pv.Spec.ClaimRef)
				}
				if metav1.HasAnnotation(claim.ObjectMeta, volume.AnnBoundByController) {
					t.Errorf("a claim that named its volume got bound-by-controller")
				}
			}
			if events := f.drainEvents(); tc.event != "" && !hasEvent(events, tc.event) {
				t.Errorf("events %q, want one with %q", events, tc.event)
			}
		})
	}
}

// TestProvisioning: a claim of a class with a provisioner is handed to it,
// at once (Immediate) or once the scheduler chose a node.
func TestProvisioning(t *testing.T) {
	const p = "keelson.io/local-path"
	cases := []struct {
		name          string
		claim         *v1.PersistentVolumeClaim
		class         *storagev1.StorageClass
		wantAnnotated bool
		event         string
	}{
		{"immediate", newPVC("c", "1Gi", pvcClass("sc")), newClass("sc", p, storagev1.VolumeBindingImmediate, false), true,
			"ExternalProvisioning Waiting for a volume to be created either by the external provisioner 'keelson.io/local-path'"},
		{"first consumer, no node yet", newPVC("c", "1Gi", pvcClass("sc")), newClass("sc", p, storagev1.VolumeBindingWaitForFirstConsumer, false), false,
			"WaitForFirstConsumer"},
		{"first consumer, node selected", newPVC("c", "1Gi", pvcClass("sc"), pvcAnn(volume.AnnSelectedNode, "n1")),
			newClass("sc", p, storagev1.VolumeBindingWaitForFirstConsumer, false), true, "ExternalProvisioning"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.claim, tc.class)
			if _, err := f.c.syncClaimKey(context.Background(), "ns/c"); err != nil {
				t.Fatal(err)
			}
			claim := f.pvc(t, "c")
			annotated := claim.Annotations[volume.AnnStorageProvisioner] == p && claim.Annotations[volume.AnnBetaStorageProvisioner] == p
			if annotated != tc.wantAnnotated {
				t.Errorf("provisioner annotations %v, want set: %v", claim.Annotations, tc.wantAnnotated)
			}
			if events := f.drainEvents(); !hasEvent(events, tc.event) {
				t.Errorf("events %q, want one with %q", events, tc.event)
			}
		})
	}
}

// TestDefaultClassAssignedRetroactively: a claim with no class at all gets
// the newest default class; one that asks for "" keeps it.
func TestDefaultClassAssignedRetroactively(t *testing.T) {
	older := newClass("older", "example.com/a", storagev1.VolumeBindingImmediate, true)
	newer := newClass("newer", "example.com/b", storagev1.VolumeBindingImmediate, true)
	newer.CreationTimestamp = metav1.NewTime(t0.Add(1))
	f := newFixture(t, older, newer, newPVC("c", "1Gi"), newPVC("none", "1Gi", pvcClass("")))
	for _, key := range []string{"ns/c", "ns/none"} {
		if _, err := f.c.syncClaimKey(context.Background(), key); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.pvc(t, "c").Spec.StorageClassName; got == nil || *got != "newer" {
		t.Errorf("class %v, want the newest default", got)
	}
	if got := f.pvc(t, "none").Spec.StorageClassName; got == nil || *got != "" {
		t.Errorf("class %v, want the empty class kept", got)
	}
}

// TestBoundClaim: a bound claim whose volume is gone or claimed by another
// claim is Lost; one whose volume came unbound is bound again.
func TestBoundClaim(t *testing.T) {
	bound := func(opts ...pvcOpt) *v1.PersistentVolumeClaim {
		return newPVC("c", "1Gi", append([]pvcOpt{pvcVolume("pv"), pvcAnn(volume.AnnBindCompleted, "yes"), func(c *v1.PersistentVolumeClaim) { c.Status.Phase = v1.ClaimBound }}, opts...)...)
	}
	cases := []struct {
		name  string
		objs  []runtime.Object
		phase v1.PersistentVolumeClaimPhase
		event string
	}{
		{"volume gone", []runtime.Object{bound()}, v1.ClaimLost, "ClaimLost Bound claim has lost its PersistentVolume. Data on the volume is lost!"},
		{"volume claimed by another", []runtime.Object{bound(), newPV("pv", "1Gi", pvClaimRef("other", "uid-other"), pvPhase(v1.VolumeBound))},
			v1.ClaimLost, "ClaimMisbound"},
		{"volume came unbound", []runtime.Object{bound(), newPV("pv", "1Gi")}, v1.ClaimBound, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.objs...)
			if _, err := f.c.syncClaimKey(context.Background(), "ns/c"); err != nil {
				t.Fatal(err)
			}
			if got := f.pvc(t, "c").Status.Phase; got != tc.phase {
				t.Errorf("phase %s, want %s", got, tc.phase)
			}
			if events := f.drainEvents(); tc.event != "" && !hasEvent(events, tc.event) {
				t.Errorf("events %q, want one with %q", events, tc.event)
			}
		})
	}
}

// TestExpansionWaitsForAResizer: a bound claim asking for more than its
// capacity is reported as waiting for an external resizer.
func TestExpansionWaitsForAResizer(t *testing.T) {
	claim := newPVC("c", "128Mi", pvcVolume("pv"), pvcAnn(volume.AnnBindCompleted, "yes"), func(c *v1.PersistentVolumeClaim) {
		c.Status.Phase = v1.ClaimBound
		c.Status.Capacity = v1.ResourceList{v1.ResourceStorage: resource.MustParse("64Mi")}
		c.Status.AccessModes = []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}
	})
	f := newFixture(t, claim, newPV("pv", "64Mi", pvClaimRef("c", "uid-c"), pvPhase(v1.VolumeBound)))
	if _, err := f.c.syncClaimKey(context.Background(), "ns/c"); err != nil {
		t.Fatal(err)
	}
	if ev := f.drainEvents(); !hasEvent(ev, "ExternalExpanding waiting for an external controller to expand this PVC") {
		t.Errorf("events %q", ev)
	}
	if got := f.pvc(t, "c").Status.Capacity[v1.ResourceStorage]; got.String() != "64Mi" {
		t.Errorf("the binder changed the capacity to %s", got.String())
	}
}
