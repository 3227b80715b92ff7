package persistentvolume

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/component-helpers/storage/volume"
)

// TestSyncVolume: phases and reclaim as the volume's claim comes and goes.
func TestSyncVolume(t *testing.T) {
	boundClaim := func(volumeName string) *v1.PersistentVolumeClaim {
		return newPVC("c", "1Gi", pvcVolume(volumeName), pvcAnn(volume.AnnBindCompleted, "yes"))
	}
	cases := []struct {
		name      string
		pv        *v1.PersistentVolume
		objs      []runtime.Object
		phase     v1.PersistentVolumePhase
		claimRef  string // "" none, else name/uid
		event     string
		claimSync bool // the claim is queued for its side of a binding
	}{
		{name: "unused volume is Available", pv: newPV("pv", "1Gi", pvPhase(v1.VolumePending)), phase: v1.VolumeAvailable},
		{name: "pre-bound by name is Available", pv: newPV("pv", "1Gi", pvClaimRef("c", ""), pvPhase("")), phase: v1.VolumeAvailable, claimRef: "c/"},
		{name: "bound both ways is Bound", pv: newPV("pv", "1Gi", pvClaimRef("c", "uid-c")), objs: []runtime.Object{boundClaim("pv")},
			phase: v1.VolumeBound, claimRef: "c/uid-c"},
		{name: "provisioned for a claim not bound yet waits for the claim", pv: newPV("pv", "1Gi", pvClaimRef("c", "uid-c")),
			objs: []runtime.Object{newPVC("c", "1Gi")}, phase: v1.VolumeAvailable, claimRef: "c/uid-c", claimSync: true},
		{name: "claim gone, Retain: Released and kept", pv: newPV("pv", "1Gi", pvClaimRef("c", "uid-c"), pvPhase(v1.VolumeBound)),
			phase: v1.VolumeReleased, claimRef: "c/uid-c"},
		{name: "claim gone, Delete by a provisioner: Released for it",
			pv: newPV("pv", "1Gi", pvClaimRef("c", "uid-c"), pvPhase(v1.VolumeBound), pvReclaim(v1.PersistentVolumeReclaimDelete),
				pvAnn(volume.AnnDynamicallyProvisioned, "keelson.io/local-path")),
			phase: v1.VolumeReleased, claimRef: "c/uid-c"},
		{name: "claim gone, Delete without a deleter: Failed",
			pv:    newPV("pv", "1Gi", pvClaimRef("c", "uid-c"), pvPhase(v1.VolumeBound), pvReclaim(v1.PersistentVolumeReclaimDelete)),
			phase: v1.VolumeFailed, claimRef: "c/uid-c", event: `VolumeFailedDelete error getting deleter volume plugin for volume "pv"`},
		{name: "claim gone, Recycle: Failed",
			pv:    newPV("pv", "1Gi", pvClaimRef("c", "uid-c"), pvPhase(v1.VolumeBound), pvReclaim(v1.PersistentVolumeReclaimRecycle)),
			phase: v1.VolumeFailed, claimRef: "c/uid-c", event: "VolumeFailedRecycle"},
		{name: "claim re-created with another UID: Released",
			pv:   newPV("pv", "1Gi", pvClaimRef("c", "uid-old"), pvPhase(v1.VolumeBound)),
			objs: []runtime.Object{newPVC("c", "1Gi")}, phase: v1.VolumeReleased, claimRef: "c/uid-old"},
		{name: "controller's binding to a claim bound elsewhere is undone",
			pv:   newPV("pv", "1Gi", pvClaimRef("c", "uid-c"), pvPhase(v1.VolumeBound), pvAnn(volume.AnnBoundByController, "yes")),
			objs: []runtime.Object{boundClaim("other")}, phase: v1.VolumeAvailable},
		{name: "user's pre-binding to a claim bound elsewhere keeps the name",
			pv:   newPV("pv", "1Gi", pvClaimRef("c", "uid-c"), pvPhase(v1.VolumeBound)),
			objs: []runtime.Object{boundClaim("other")}, phase: v1.VolumeAvailable, claimRef: "c/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, append(tc.objs, tc.pv)...)
			if _, err := f.c.syncVolumeKey(context.Background(), "pv"); err != nil {
				t.Fatal(err)
			}
			pv := f.pv(t, "pv")
			if pv.Status.Phase != tc.phase {
				t.Errorf("phase %s, want %s", pv.Status.Phase, tc.phase)
			}
			got := ""
			if ref := pv.Spec.ClaimRef; ref != nil {
				got = ref.Name + "/" + string(ref.UID)
			}
			if got != tc.claimRef {
				t.Errorf("claimRef %q, want %q", got, tc.claimRef)
			}
			if tc.claimRef == "" && metav1.HasAnnotation(pv.ObjectMeta, volume.AnnBoundByController) {
				t.Errorf("bound-by-controller kept on an unbound volume")
			}
			if events := f.drainEvents(); tc.event != "" && !hasEvent(events, tc.event) {
				t.Errorf("events %q, want one with %q", events, tc.event)
			}
			if got := f.c.claimQueue.Len() > 0; got != tc.claimSync {
				t.Errorf("claim queued %v, want %v", got, tc.claimSync)
			}
		})
	}
}
