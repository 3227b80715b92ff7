package persistentvolume

import (
	"context"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

// TestClaimProtection: the pvc-protection finalizer of a claim being
// deleted goes once no scheduled pod uses it.
func TestClaimProtection(t *testing.T) {
	finished := podUsing("done", "c", "n1")
	finished.Status.Phase = v1.PodSucceeded
	shutDownEphemeral := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-p", DeletionTimestamp: ptr.To(metav1.NewTime(t0)), DeletionGracePeriodSeconds: ptr.To[int64](0)},
		Spec:       v1.PodSpec{NodeName: "n1", Volumes: []v1.Volume{{Name: "scratch", VolumeSource: v1.VolumeSource{Ephemeral: &v1.EphemeralVolumeSource{}}}}},
	}
	ephemeralClaim := newPVC("p-scratch", "1Gi", pvcDeleting, func(c *v1.PersistentVolumeClaim) {
		c.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "p", UID: "uid-p", Controller: ptr.To(true)}}
	})
	cases := []struct {
		name      string
		claim     *v1.PersistentVolumeClaim
		objs      []runtime.Object
		finalizer bool
	}{
		{"unused claim is freed", newPVC("c", "1Gi", pvcDeleting), nil, false},
		{"a running pod keeps it", newPVC("c", "1Gi", pvcDeleting), []runtime.Object{podUsing("web", "c", "n1")}, true},
		// Upstream keeps a claim while a finished pod on a node still
		// names it: the pod must be deleted first.
		{"a finished pod on a node keeps it", newPVC("c", "1Gi", pvcDeleting), []runtime.Object{finished}, true},
		{"an unscheduled pod does not", newPVC("c", "1Gi", pvcDeleting), []runtime.Object{podUsing("web", "c", "")}, false},
		{"a pod using another claim does not", newPVC("c", "1Gi", pvcDeleting), []runtime.Object{podUsing("web", "other", "n1")}, false},
		{"a shut-down pod frees its ephemeral claim", ephemeralClaim, []runtime.Object{shutDownEphemeral}, false},
		{"a claim not being deleted gets the finalizer", newPVC("c", "1Gi"), nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, append(tc.objs, tc.claim)...)
			if _, err := f.c.syncClaimProtection(context.Background(), "ns/"+tc.claim.Name); err != nil {
				t.Fatal(err)
			}
			got := slices.Contains(f.pvc(t, tc.claim.Name).Finalizers, claimProtectionFinalizer)
			if got != tc.finalizer {
				t.Errorf("finalizer present %v, want %v", got, tc.finalizer)
			}
		})
	}
}

// TestClaimProtectionAsksTheAPIServer: a pod the cache has not shown yet
// still keeps the claim.
func TestClaimProtectionAsksTheAPIServer(t *testing.T) {
	f := newFixture(t, newPVC("c", "1Gi", pvcDeleting))
	if _, err := f.client.CoreV1().Pods("ns").Create(context.Background(), podUsing("web", "c", "n1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.syncClaimProtection(context.Background(), "ns/c"); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.pvc(t, "c").Finalizers, claimProtectionFinalizer) {
		t.Error("finalizer removed while a pod (not yet cached) uses the claim")
	}
}

// TestUnusedCondition: a bound claim says whether a pod refers to it.
func TestUnusedCondition(t *testing.T) {
	bound := func() *v1.PersistentVolumeClaim {
		c := newPVC("c", "1Gi", pvcVolume("pv"))
		c.Finalizers = []string{claimProtectionFinalizer}
		c.Status.Phase = v1.ClaimBound
		return c
	}
	finished := podUsing("done", "c", "n1")
	finished.Status.Phase = v1.PodFailed
	cases := []struct {
		name   string
		objs   []runtime.Object
		status v1.ConditionStatus
		reason string
	}{
		{"no pod", nil, v1.ConditionTrue, reasonNoPodsUsingPVC},
		{"pending pod", []runtime.Object{podUsing("web", "c", "")}, v1.ConditionFalse, reasonPodUsingPVC},
		{"finished pod", []runtime.Object{finished}, v1.ConditionTrue, reasonNoPodsUsingPVC},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, append(tc.objs, bound())...)
			if _, err := f.c.syncClaimProtection(context.Background(), "ns/c"); err != nil {
				t.Fatal(err)
			}
			conds := f.pvc(t, "c").Status.Conditions
			if len(conds) != 1 || conds[0].Type != v1.PersistentVolumeClaimUnused || conds[0].Status != tc.status || conds[0].Reason != tc.reason {
				t.Errorf("conditions %+v, want Unused=%s (%s)", conds, tc.status, tc.reason)
			}
		})
	}
}

// TestVolumeProtection: the pv-protection finalizer goes once the volume
// being deleted is not Bound.
func TestVolumeProtection(t *testing.T) {
	deleting := func(phase v1.PersistentVolumePhase) *v1.PersistentVolume {
		return newPV("pv", "1Gi", pvPhase(phase), func(pv *v1.PersistentVolume) {
			pv.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
			pv.Finalizers = []string{volumeProtectionFinalizer}
		})
	}
	cases := []struct {
		name      string
		pv        *v1.PersistentVolume
		finalizer bool
	}{
		{"bound volume is kept", deleting(v1.VolumeBound), true},
		{"released volume is freed", deleting(v1.VolumeReleased), false},
		{"available volume is freed", deleting(v1.VolumeAvailable), false},
		{"a volume not being deleted gets the finalizer", newPV("pv", "1Gi"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.pv)
			if _, err := f.c.syncVolumeProtection(context.Background(), "pv"); err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(f.pv(t, "pv").Finalizers, volumeProtectionFinalizer); got != tc.finalizer {
				t.Errorf("finalizer present %v, want %v", got, tc.finalizer)
			}
		})
	}
}

// TestVACProtection: the vac-protection finalizer of a class being deleted
// goes once no claim or volume names it, and a class without it gets it.
func TestVACProtection(t *testing.T) {
	deleting := func(name string) *storagev1.VolumeAttributesClass {
		return &storagev1.VolumeAttributesClass{ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: []string{vacProtectionFinalizer},
			DeletionTimestamp: ptr.To(metav1.NewTime(t0))}, DriverName: "d"}
	}
	modifying := newPVC("moving", "1Gi", func(c *v1.PersistentVolumeClaim) {
		c.Status.ModifyVolumeStatus = &v1.ModifyVolumeStatus{TargetVolumeAttributesClassName: "gold"}
	})
	current := newPVC("cur", "1Gi", func(c *v1.PersistentVolumeClaim) { c.Status.CurrentVolumeAttributesClassName = ptr.To("gold") })
	asked := newPVC("asks", "1Gi", func(c *v1.PersistentVolumeClaim) { c.Spec.VolumeAttributesClassName = ptr.To("gold") })
	volume := newPV("pv", "1Gi", func(pv *v1.PersistentVolume) { pv.Spec.VolumeAttributesClassName = ptr.To("gold") })
	other := newPVC("other", "1Gi", func(c *v1.PersistentVolumeClaim) { c.Spec.VolumeAttributesClassName = ptr.To("silver") })
	cases := []struct {
		name      string
		vac       *storagev1.VolumeAttributesClass
		objs      []runtime.Object
		finalizer bool
	}{
		{"an unused class is freed", deleting("gold"), []runtime.Object{other}, false},
		{"a claim asking for it keeps it", deleting("gold"), []runtime.Object{asked}, true},
		{"a claim whose current class it is keeps it", deleting("gold"), []runtime.Object{current}, true},
		{"a claim being modified to it keeps it", deleting("gold"), []runtime.Object{modifying}, true},
		{"a volume naming it keeps it", deleting("gold"), []runtime.Object{volume}, true},
		{"a class not being deleted gets the finalizer", &storagev1.VolumeAttributesClass{ObjectMeta: metav1.ObjectMeta{Name: "gold"}, DriverName: "d"}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, append(tc.objs, tc.vac)...)
			if _, err := f.c.syncVACProtection(context.Background(), tc.vac.Name); err != nil {
				t.Fatal(err)
			}
			got, err := f.client.StorageV1().VolumeAttributesClasses().Get(context.Background(), tc.vac.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if has := slices.Contains(got.Finalizers, vacProtectionFinalizer); has != tc.finalizer {
				t.Errorf("finalizer present %v, want %v", has, tc.finalizer)
			}
		})
	}
}

// TestVACQueuedWhenItsLastUserGoes: deleting the last claim that names a
// class queues the class, so its deletion completes without a resync.
func TestVACQueuedWhenItsLastUserGoes(t *testing.T) {
	asked := newPVC("asks", "1Gi", func(c *v1.PersistentVolumeClaim) { c.Spec.VolumeAttributesClassName = ptr.To("gold") })
	f := newFixture(t, asked)
	f.c.vacWatchers().OnDelete(asked)
	if f.c.vacProtection.Len() != 1 {
		t.Fatalf("queue holds %d classes after the claim's deletion, want gold", f.c.vacProtection.Len())
	}
	if key, _ := f.c.vacProtection.Get(); key != "gold" {
		t.Errorf("queued %q, want gold", key)
	}
	f.c.vacProtection.Done("gold")
	// A status write that keeps the class queues nothing; a change of
	// class queues the class left.
	f.c.vacWatchers().OnUpdate(asked, asked.DeepCopy())
	if n := f.c.vacProtection.Len(); n != 0 {
		t.Errorf("an update keeping the class queued %d classes", n)
	}
	silver := asked.DeepCopy()
	silver.Spec.VolumeAttributesClassName = ptr.To("silver")
	f.c.vacWatchers().OnUpdate(asked, silver)
	if key, _ := f.c.vacProtection.Get(); key != "gold" || f.c.vacProtection.Len() != 0 {
		t.Errorf("after a change of class queued %q (+%d), want gold alone", key, f.c.vacProtection.Len())
	}
}
