package placement

import (
	"context"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/component-helpers/storage/volume"
	"k8s.io/utils/ptr"
)

// fakeAssumptions are bindings in flight.
type fakeAssumptions struct {
	taken map[string]bool
	nodes map[string]string
}

func (f fakeAssumptions) VolumeTaken(pv string) bool { return f.taken[pv] }
func (f fakeAssumptions) ClaimNode(c string) (string, bool) {
	n, ok := f.nodes[c]
	return n, ok
}

func delayedClaim(name, class, size string, ann ...string) *v1.PersistentVolumeClaim {
	c := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), ResourceVersion: "3"},
		Spec: v1.PersistentVolumeClaimSpec{StorageClassName: ptr.To(class), AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			Resources: v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse(size)}}},
	}
	for i := 0; i+1 < len(ann); i += 2 {
		metav1.SetMetaDataAnnotation(&c.ObjectMeta, ann[i], ann[i+1])
	}
	return c
}

// localVolume is an available volume of class on node.
func localVolume(name, class, node, size string) *v1.PersistentVolume {
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "2"},
		Spec: v1.PersistentVolumeSpec{
			StorageClassName: class, Capacity: v1.ResourceList{v1.ResourceStorage: resource.MustParse(size)},
			AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{node}}},
			}}}},
		},
		Status: v1.PersistentVolumeStatus{Phase: v1.VolumeAvailable},
	}
}

// TestDelayedBinding: claims of WaitForFirstConsumer classes get their
// volume with the node, as upstream's VolumeBinding plugin chooses it.
func TestDelayedBinding(t *testing.T) {
	wffc := ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)
	classes := []any{
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "static"}, Provisioner: volume.NotSupportedProvisioner, VolumeBindingMode: wffc},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-path"}, Provisioner: "keelson.io/local-path", VolumeBindingMode: wffc},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "zonal"}, Provisioner: "example.com/zonal", VolumeBindingMode: wffc,
			AllowedTopologies: []v1.TopologySelectorTerm{{MatchLabelExpressions: []v1.TopologySelectorLabelRequirement{{Key: v1.LabelTopologyZone, Values: []string{"z1"}}}}}},
	}
	claims := []any{
		delayedClaim("one", "static", "1Gi"), delayedClaim("two", "static", "1Gi"), delayedClaim("big", "static", "50Gi"),
		delayedClaim("dyn", "local-path", "1Gi"), delayedClaim("zoned", "zonal", "1Gi"),
		delayedClaim("chosen", "local-path", "1Gi", volume.AnnSelectedNode, "b"),
		delayedClaim("inflight", "local-path", "1Gi"),
	}
	pvs := []any{localVolume("pv-a", "static", "a", "5Gi"), localVolume("pv-b", "static", "b", "10Gi"),
		localVolume("pv-b-taken", "static", "b", "2Gi"), localVolume("pv-c", "static", "c", "100Gi")}
	e := testEngine(Config{}, Listers{
		PVCs:           corelisters.NewPersistentVolumeClaimLister(indexer(claims...)),
		PVs:            corelisters.NewPersistentVolumeLister(indexer(pvs...)),
		StorageClasses: storagelisters.NewStorageClassLister(indexer(classes...)),
	})
	e.SetVolumeAssumptions(fakeAssumptions{taken: map[string]bool{"pv-b-taken": true}, nodes: map[string]string{"ns/inflight": "c"}})
	w := world([]*v1.Node{
		node("a", withLabels(v1.LabelHostname, "a", v1.LabelTopologyZone, "z1")),
		node("b", withLabels(v1.LabelHostname, "b", v1.LabelTopologyZone, "z2")),
		node("c", withLabels(v1.LabelHostname, "c")),
	})
	using := func(names ...string) *v1.Pod {
		p := pod("p")
		for _, n := range names {
			p.Spec.Volumes = append(p.Spec.Volumes, v1.Volume{Name: n, VolumeSource: v1.VolumeSource{
				PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: n}}})
		}
		return p
	}
	tests := []struct {
		name string
		pod  *v1.Pod
		want []string
	}{
		{"each node with a free volume of the class fits", using("one"), []string{"a", "b", "c"}},
		{"two claims need two volumes on one node", using("one", "two"), nil},
		{"a claim larger than the volumes on a node", using("big"), []string{"c"}},
		{"a provisioner serves every node", using("dyn"), []string{"a", "b", "c"}},
		{"allowed topologies limit the nodes", using("zoned"), []string{"a"}},
		{"a selected node is kept", using("chosen"), []string{"b"}},
		{"a node chosen by a binding in flight is kept", using("inflight"), []string{"c"}},
		{"static and provisioned together", using("big", "dyn"), []string{"c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fits(t, e, w, tc.pod); !slices.Equal(got, tc.want) {
				t.Fatalf("fits %v, want %v (verdicts %v)", got, tc.want, verdicts(t, e, w, tc.pod))
			}
		})
	}
	if v := verdicts(t, e, w, using("one", "two")); v["a"] != reasonBindConflict {
		t.Errorf("reason on a: %q, want %q", v["a"], reasonBindConflict)
	}
}

// TestVolumePlan: the plan for the chosen node names the volume to bind
// and the claims to provision there.
func TestVolumePlan(t *testing.T) {
	wffc := ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)
	e := testEngine(Config{}, Listers{
		PVCs: corelisters.NewPersistentVolumeClaimLister(indexer(delayedClaim("one", "static", "1Gi"), delayedClaim("dyn", "local-path", "1Gi"))),
		PVs:  corelisters.NewPersistentVolumeLister(indexer(localVolume("pv-a", "static", "a", "5Gi"))),
		StorageClasses: storagelisters.NewStorageClassLister(indexer(
			&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "static"}, Provisioner: volume.NotSupportedProvisioner, VolumeBindingMode: wffc},
			&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-path"}, Provisioner: "keelson.io/local-path", VolumeBindingMode: wffc})),
	})
	w := world([]*v1.Node{node("a", withLabels(v1.LabelHostname, "a")), node("b", withLabels(v1.LabelHostname, "b"))})
	p := pod("p")
	for _, n := range []string{"one", "dyn"} {
		p.Spec.Volumes = append(p.Spec.Volumes, v1.Volume{Name: n, VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: n}}})
	}
	res, err := e.Schedule(context.Background(), w, nil, podInfo(p))
	if err != nil {
		t.Fatal(err)
	}
	plan := res.Volumes
	if res.Node != "a" || plan == nil || plan.Node != "a" {
		t.Fatalf("result %+v plan %+v, want node a with a plan", res, plan)
	}
	if len(plan.Bindings) != 1 || plan.Bindings[0].Volume.Name != "pv-a" || plan.Bindings[0].Claim.Name != "one" {
		t.Errorf("bindings %+v, want pv-a for one", plan.Bindings)
	}
	if len(plan.Provision) != 1 || plan.Provision[0].Name != "dyn" {
		t.Errorf("provision %+v, want dyn", plan.Provision)
	}
	res, err = e.Schedule(context.Background(), w, nil, podInfo(pod("plain")))
	if err != nil || res.Volumes != nil {
		t.Errorf("a pod without claims got plan %+v (%v)", res.Volumes, err)
	}
}
