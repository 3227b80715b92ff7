package persistentvolume

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func ephemeralPod() *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "uid-web"},
		Spec: v1.PodSpec{Volumes: []v1.Volume{{Name: "scratch", VolumeSource: v1.VolumeSource{Ephemeral: &v1.EphemeralVolumeSource{
			VolumeClaimTemplate: &v1.PersistentVolumeClaimTemplate{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: v1.PersistentVolumeClaimSpec{
					AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
					StorageClassName: ptr.To("local-path"),
					Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("64Mi")}},
				},
			}}}}}},
	}
}

// TestEphemeralClaimCreated: the claim <pod>-<volume>, owned by the pod,
// from the template.
func TestEphemeralClaimCreated(t *testing.T) {
	f := newFixture(t, ephemeralPod())
	if _, err := f.c.syncEphemeral(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	claim := f.pvc(t, "web-scratch")
	ref := metav1.GetControllerOf(claim)
	if ref == nil || ref.Kind != "Pod" || ref.UID != "uid-web" || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("owner %+v, want the pod as blocking controller", ref)
	}
	if claim.Labels["app"] != "web" || *claim.Spec.StorageClassName != "local-path" {
		t.Errorf("claim %+v does not follow the template", claim)
	}
}

// TestEphemeralClaimOfAnotherOwner: a claim of that name the pod does not
// own is reported on the pod and left alone.
func TestEphemeralClaimOfAnotherOwner(t *testing.T) {
	f := newFixture(t, ephemeralPod(), newPVC("web-scratch", "1Gi"))
	if _, err := f.c.syncEphemeral(context.Background(), "ns/web"); err == nil {
		t.Fatal("no error for a claim the pod does not own")
	}
	if events := f.drainEvents(); !hasEvent(events, "FailedBinding ephemeral volume scratch: PVC ns/web-scratch was not created for pod ns/web (pod is not owner)") {
		t.Errorf("events %q", events)
	}
	if refs := f.pvc(t, "web-scratch").OwnerReferences; len(refs) != 0 {
		t.Errorf("foreign claim adopted: %+v", refs)
	}
}
