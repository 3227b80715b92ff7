package placement

import (
	"errors"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/keelson/keelson/plugins/sdk/localstorage"
)

// TestLostLocalVolume: a pod whose claim is bound to a local volume on a
// deleted node is refused with a message naming the node and the way out
// (it goes into the pod's FailedScheduling event); a volume whose node
// exists, and volumes that are not local, keep upstream's per-node verdict.
func TestLostLocalVolume(t *testing.T) {
	bound := func(name, pv string) *v1.PersistentVolumeClaim {
		return &v1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Annotations: map[string]string{AnnBindCompleted: "yes"}},
			Spec:       v1.PersistentVolumeClaimSpec{VolumeName: pv},
			Status:     v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound},
		}
	}
	pinned := func(name, node string, src v1.PersistentVolumeSource, ann ...string) *v1.PersistentVolume {
		pv := localVolume(name, "local-path", node, "1Gi")
		pv.Spec.PersistentVolumeSource = src
		pv.Status.Phase = v1.VolumeBound
		if len(ann) == 2 {
			pv.Annotations = map[string]string{ann[0]: ann[1]}
		}
		return pv
	}
	local := v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/var/lib/keelson/storage/x"}}
	hostPath := v1.PersistentVolumeSource{HostPath: &v1.HostPathVolumeSource{Path: "/srv"}}
	claims := []any{bound("provisioned", "pvc-1"), bound("static", "local-1"), bound("alive", "pvc-2"), bound("remote", "hp-1")}
	pvs := []any{
		pinned("pvc-1", "gone", local, localstorage.NodeAnnotation, "gone"),
		pinned("local-1", "gone-too", local),
		pinned("pvc-2", "a", local, localstorage.NodeAnnotation, "a"),
		pinned("hp-1", "gone", hostPath),
	}
	e := testEngine(Config{}, Listers{
		PVCs: corelisters.NewPersistentVolumeClaimLister(indexer(claims...)),
		PVs:  corelisters.NewPersistentVolumeLister(indexer(pvs...)),
	})
	w := world([]*v1.Node{node("a", withLabels(v1.LabelHostname, "a")), node("b", withLabels(v1.LabelHostname, "b"))})
	using := func(claim string) *v1.Pod {
		p := pod("web-0")
		p.Namespace = "ns"
		p.Spec.Volumes = []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{
			PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}}
		return p
	}
	for _, tc := range []struct {
		claim string
		want  []string
	}{
		{"provisioned", []string{`local volume "pvc-1" on node "gone", which is no longer in the cluster`, "delete the claim and then the pod", `the data on node "gone" is lost`}},
		{"static", []string{`local volume "local-1" on node "gone-too"`}},
	} {
		v := verdicts(t, e, w, using(tc.claim))
		for _, want := range tc.want {
			if !strings.Contains(v["*"], want) {
				t.Errorf("claim %s: verdicts %v, want the pod refused with %q", tc.claim, v, want)
			}
		}
	}
	if v := verdicts(t, e, w, using("alive")); v["a"] != "" || v["b"] != reasonPVNodeAffinity {
		t.Errorf("a volume on an existing node: verdicts %v, want a fit on a and upstream's conflict on b", v)
	}
	if v := verdicts(t, e, w, using("remote")); v["*"] != "" || v["a"] != reasonPVNodeAffinity {
		t.Errorf("a hostPath volume: verdicts %v, want upstream's per-node conflict", v)
	}
	_, err := e.Schedule(t.Context(), w, nil, podInfo(using("provisioned")))
	var fit *FitError
	if !errors.As(err, &fit) || !strings.Contains(err.Error(), `node "gone"`) {
		t.Errorf("Schedule: %v, want a FitError naming the node", err)
	}
	t.Logf("FailedScheduling message: %v", err)
}
