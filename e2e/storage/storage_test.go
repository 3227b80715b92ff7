package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/component-helpers/storage/volume"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/e2e/harness"
)

// TestPersistentStorage runs the storage scenarios against one cluster,
// each in its own namespace.
func TestPersistentStorage(t *testing.T) {
	c := startCluster(t)
	t.Run("DefaultClass", c.testDefaultClass)
	t.Run("DataOutlivesItsPods", c.testDataOutlivesItsPods)
	t.Run("NamespaceDeletionCompletes", c.testNamespaceDeletion)
	t.Run("RetainKeepsTheDirectory", c.testRetain)
	t.Run("StaticHostPathClaimRef", c.testStaticHostPath)
	t.Run("NodeAffinityConflict", c.testNodeAffinityConflict)
	t.Run("EphemeralVolume", c.testEphemeral)
	t.Run("StatefulSetKeepsItsData", c.testStatefulSet)
}

// testDefaultClass: the localpath plugin made the default class.
func (c *cluster) testDefaultClass(t *testing.T) {
	var sc *storagev1.StorageClass
	harness.Eventually(t, waitTimeout, "StorageClass local-path exists", func() (bool, string) {
		var err error
		sc, err = c.client.StorageV1().StorageClasses().Get(context.Background(), "local-path", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	if sc.Provisioner != "keelson.io/local-path" || sc.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" ||
		*sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer || *sc.ReclaimPolicy != v1.PersistentVolumeReclaimDelete ||
		!ptr.Deref(sc.AllowVolumeExpansion, false) {
		t.Errorf("class %+v", sc)
	}
}

// testDataOutlivesItsPods: a claim of the default class binds when its pod
// is scheduled, on that pod's node; what the pod wrote (through the volume
// and a subPath of it) is read back by the next pod (with the fsGroup it
// asks for); an expansion reaches the claim's status; deleting the claim
// deletes the volume and its directory.
func (c *cluster) testDataOutlivesItsPods(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "keep")
	c.claim(t, ns, "data", "64Mi", nil)
	harness.Eventually(t, waitTimeout, "the claim waits for its first consumer", func() (bool, string) {
		ev := c.events(ns, "PersistentVolumeClaim", "data")
		return strings.Contains(ev, "WaitForFirstConsumer"), ev
	})
	c.shellPod(t, ns, "writer", "data", "echo persisted > /data/file && echo nested > /sub/n", func(p *v1.Pod) {
		p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, v1.VolumeMount{Name: "data", MountPath: "/sub", SubPath: "nested"})
	})
	writer := c.waitPod(t, ns, "writer", v1.PodSucceeded)
	pvc := c.waitClaimBound(t, ns, "data")
	if ptr.Deref(pvc.Spec.StorageClassName, "") != "local-path" || pvc.Annotations[volume.AnnSelectedNode] != c.node {
		t.Errorf("claim class %v selected node %q, want local-path on %s", pvc.Spec.StorageClassName, pvc.Annotations[volume.AnnSelectedNode], c.node)
	}
	pv, err := c.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if writer.Spec.NodeName != c.node || volume.CheckNodeAffinity(pv, map[string]string{v1.LabelHostname: c.node}) != nil {
		t.Errorf("pod on %q, volume affinity %+v: want both on %s", writer.Spec.NodeName, pv.Spec.NodeAffinity, c.node)
	}
	dir := filepath.Join(c.storageDir(), pv.Name)
	if pv.Spec.Local == nil || pv.Spec.Local.Path != dir {
		t.Fatalf("volume source %+v, want local %s", pv.Spec.PersistentVolumeSource, dir)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "file")); err != nil || string(b) != "persisted\n" {
		t.Fatalf("the volume's directory holds %q (%v)", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "nested", "n")); err != nil || string(b) != "nested\n" {
		t.Errorf("the subPath mount wrote %q (%v), want it under nested/", b, err)
	}
	c.deletePod(t, ns, "writer")

	c.shellPod(t, ns, "reader", "data", "cat /data/file && touch /data/by-reader && stat -c %g /data/by-reader", func(p *v1.Pod) {
		p.Spec.SecurityContext = &v1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), FSGroup: ptr.To[int64](3000)}
	})
	c.waitPod(t, ns, "reader", v1.PodSucceeded)
	if out := c.logs(t, ns, "reader"); out != "persisted\n3000\n" {
		t.Errorf("reader printed %q, want the file and its fsGroup", out)
	}
	if st, err := os.Stat(dir); err != nil || st.Sys().(*syscall.Stat_t).Gid != 3000 || st.Mode()&os.ModeSetgid == 0 {
		t.Errorf("directory %v %v: want group 3000 and setgid", st.Mode(), err)
	}
	c.deletePod(t, ns, "reader")
	c.expand(t, ns, "data", "128Mi")

	if err := c.client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "claim data", func() error {
		_, err := c.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
		return err
	})
	waitGone(t, "volume "+pv.Name, func() error {
		_, err := c.client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		return err
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory %s still there after its volume was deleted: %v", dir, err)
	}
}

// expand asks for size and waits for the claim's status and its volume to
// have it (the local-path class allows expansion).
func (c *cluster) expand(t *testing.T, ns, name, size string) {
	t.Helper()
	ctx := context.Background()
	patch := fmt.Sprintf(`{"spec":{"resources":{"requests":{"storage":%q}}}}`, size)
	if _, err := c.client.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("expanding claim %s/%s: %v", ns, name, err)
	}
	harness.Eventually(t, waitTimeout, "claim "+name+" has "+size, func() (bool, string) {
		pvc, err := c.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pv, err := c.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		got, pvGot := pvc.Status.Capacity[v1.ResourceStorage], pv.Spec.Capacity[v1.ResourceStorage]
		return got.String() == size && pvGot.String() == size && len(pvc.Status.AllocatedResourceStatuses) == 0,
			fmt.Sprintf("claim %s (%v), volume %s; events: %s", got.String(), pvc.Status.AllocatedResourceStatuses, pvGot.String(), c.events(ns, "PersistentVolumeClaim", name))
	})
}

// testNamespaceDeletion: deleting a namespace whose running pod holds a
// claim completes; the volume and its directory go with it.
func (c *cluster) testNamespaceDeletion(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "doomed")
	c.claim(t, ns, "data", "64Mi", nil)
	c.shellPod(t, ns, "holder", "data", "echo x > /data/x && sleep 3600")
	c.waitPod(t, ns, "holder", v1.PodRunning)
	pvc := c.waitClaimBound(t, ns, "data")
	dir := filepath.Join(c.storageDir(), pvc.Spec.VolumeName)
	c.checkVolumeStats(t, ns, "holder", "data")
	if err := c.client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "namespace "+ns, func() error {
		_, err := c.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return err
	})
	waitGone(t, "volume "+pvc.Spec.VolumeName, func() error {
		_, err := c.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		return err
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory %s still there: %v", dir, err)
	}
}

// checkVolumeStats: the node's summary API reports the pod's volume with
// its claim.
func (c *cluster) checkVolumeStats(t *testing.T, ns, pod, claim string) {
	t.Helper()
	c.waitVolumeStats(t, ns, pod, claim, func(v statsv1alpha1.VolumeStats) bool {
		return v.CapacityBytes != nil && *v.CapacityBytes > 0 && v.UsedBytes != nil
	})
}

// waitVolumeStats waits until the node's summary API reports the pod's
// volume of claim as ok says.
func (c *cluster) waitVolumeStats(t *testing.T, ns, pod, claim string, ok func(statsv1alpha1.VolumeStats) bool) {
	t.Helper()
	harness.Eventually(t, waitTimeout, "the summary API reports the volume of "+pod, func() (bool, string) {
		raw, err := c.kubeletGet(t, "/stats/summary")
		if err != nil {
			return false, err.Error()
		}
		var sum statsv1alpha1.Summary
		if err := json.Unmarshal(raw, &sum); err != nil {
			return false, err.Error()
		}
		for _, p := range sum.Pods {
			if p.PodRef.Namespace != ns || p.PodRef.Name != pod {
				continue
			}
			for _, v := range p.VolumeStats {
				if v.PVCRef != nil && v.PVCRef.Name == claim && ok(v) {
					return true, ""
				}
			}
			return false, "volume stats " + describeVolumeStats(p.VolumeStats)
		}
		return false, "pod not in the summary"
	})
}

// testRetain: with reclaim Retain the released volume and its directory
// stay.
func (c *cluster) testRetain(t *testing.T) {
	ctx := context.Background()
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-retain"}, Provisioner: "keelson.io/local-path",
		ReclaimPolicy: ptr.To(v1.PersistentVolumeReclaimRetain), VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)}
	if _, err := c.client.StorageV1().StorageClasses().Create(ctx, class, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ns := c.namespace(t, "retain")
	c.claim(t, ns, "data", "64Mi", ptr.To("local-retain"))
	c.shellPod(t, ns, "writer", "data", "echo kept > /data/file")
	c.waitPod(t, ns, "writer", v1.PodSucceeded)
	pvc := c.waitClaimBound(t, ns, "data")
	c.deletePod(t, ns, "writer")
	if err := c.client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, waitTimeout, "the volume is Released", func() (bool, string) {
		pv, err := c.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return pv.Status.Phase == v1.VolumeReleased, string(pv.Status.Phase)
	})
	if b, err := os.ReadFile(filepath.Join(c.storageDir(), pvc.Spec.VolumeName, "file")); err != nil || string(b) != "kept\n" {
		t.Errorf("retained data %q (%v)", b, err)
	}
}

// testStaticHostPath: a hostPath volume pre-bound with a claimRef binds to
// exactly that claim, not to an earlier claim that would fit as well, and
// the pod's writes land in the host directory.
func (c *cluster) testStaticHostPath(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "static")
	hostDir := t.TempDir()
	if err := os.Chmod(hostDir, 0o777); err != nil {
		t.Fatal(err)
	}
	c.claim(t, ns, "other", "1Gi", ptr.To(""))
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "static-" + c.node},
		Spec: v1.PersistentVolumeSpec{
			Capacity:                      v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        v1.PersistentVolumeSource{HostPath: &v1.HostPathVolumeSource{Path: hostDir}},
			ClaimRef:                      &v1.ObjectReference{Namespace: ns, Name: "mine"},
		},
	}
	if _, err := c.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.client.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
	c.claim(t, ns, "mine", "512Mi", ptr.To(""))
	mine := c.waitClaimBound(t, ns, "mine")
	if mine.Spec.VolumeName != pv.Name {
		t.Fatalf("claim mine bound to %q, want %s", mine.Spec.VolumeName, pv.Name)
	}
	if other, _ := c.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "other", metav1.GetOptions{}); other.Status.Phase != v1.ClaimPending {
		t.Errorf("claim other is %s, want Pending: the volume was reserved for mine", other.Status.Phase)
	}
	c.shellPod(t, ns, "writer", "mine", "echo on-the-host > /data/file")
	c.waitPod(t, ns, "writer", v1.PodSucceeded)
	if b, err := os.ReadFile(filepath.Join(hostDir, "file")); err != nil || string(b) != "on-the-host\n" {
		t.Errorf("host directory holds %q (%v)", b, err)
	}
	c.deletePod(t, ns, "writer")
}

// testNodeAffinityConflict: a pod placed by hand on a node its volume is
// not pinned to does not start, and says why.
func (c *cluster) testNodeAffinityConflict(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "elsewhere")
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "elsewhere-" + c.node},
		Spec: v1.PersistentVolumeSpec{
			Capacity:                      v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: t.TempDir()}},
			ClaimRef:                      &v1.ObjectReference{Namespace: ns, Name: "data"},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{"another-node"}}},
			}}}},
		},
	}
	if _, err := c.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.client.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
	c.claim(t, ns, "data", "1Gi", ptr.To(""))
	c.waitClaimBound(t, ns, "data")
	c.shellPod(t, ns, "misplaced", "data", "true", func(p *v1.Pod) { p.Spec.NodeName = c.node })
	harness.Eventually(t, waitTimeout, "the pod reports the conflict", func() (bool, string) {
		ev := c.events(ns, "Pod", "misplaced")
		return strings.Contains(ev, "FailedMount") && strings.Contains(ev, "pinned by its nodeAffinity to nodes with kubernetes.io/hostname In [another-node]"), ev
	})
	p, err := c.client.CoreV1().Pods(ns).Get(ctx, "misplaced", metav1.GetOptions{})
	if err != nil || p.Status.Phase != v1.PodPending {
		t.Errorf("pod %v (%v), want it Pending", p.Status.Phase, err)
	}
	c.deletePod(t, ns, "misplaced")
}

// testEphemeral: a generic ephemeral volume gets its claim <pod>-<volume>,
// owned by the pod, provisioned on the pod's node; it goes with the pod.
func (c *cluster) testEphemeral(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "scratch")
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: v1.PodSpec{
			RestartPolicy:                 v1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []v1.Container{{Name: "sh", Image: "keelson.test/busybox:e2e", ImagePullPolicy: v1.PullNever,
				Command: []string{"sh", "-c", "echo scratch > /scratch/f && cat /scratch/f"}, VolumeMounts: []v1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}}},
			Volumes: []v1.Volume{{Name: "scratch", VolumeSource: v1.VolumeSource{Ephemeral: &v1.EphemeralVolumeSource{
				VolumeClaimTemplate: &v1.PersistentVolumeClaimTemplate{Spec: v1.PersistentVolumeClaimSpec{
					AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
					Resources:   v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("16Mi")}},
				}},
			}}}},
		},
	}
	if _, err := c.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitPod(t, ns, "web", v1.PodSucceeded)
	if out := c.logs(t, ns, "web"); out != "scratch\n" {
		t.Errorf("pod printed %q", out)
	}
	pvc := c.waitClaimBound(t, ns, "web-scratch")
	if ref := metav1.GetControllerOf(pvc); ref == nil || ref.Kind != "Pod" || ref.Name != "web" {
		t.Errorf("claim owner %+v, want pod web", ref)
	}
	c.deletePod(t, ns, "web")
	waitGone(t, "claim web-scratch", func() error {
		_, err := c.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "web-scratch", metav1.GetOptions{})
		return err
	})
	waitGone(t, "volume "+pvc.Spec.VolumeName, func() error {
		_, err := c.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		return err
	})
}

// testStatefulSet: a StatefulSet's pod gets the claim of its
// volumeClaimTemplate and finds its data again when it is re-created.
func (c *cluster) testStatefulSet(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "sts")
	script := "if [ -f /data/id ]; then echo found $(cat /data/id); else echo first > /data/id; echo wrote; fi; exec sleep 3600"
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To[int32](1),
			ServiceName: "web",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: v1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []v1.Container{{Name: "sh", Image: "keelson.test/busybox:e2e", ImagePullPolicy: v1.PullNever,
						Command: []string{"sh", "-c", script}, VolumeMounts: []v1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
				},
			},
			VolumeClaimTemplates: []v1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: v1.PersistentVolumeClaimSpec{
					AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
					Resources:   v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("16Mi")}},
				},
			}},
		},
	}
	if _, err := c.client.AppsV1().StatefulSets(ns).Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first := c.waitPod(t, ns, "web-0", v1.PodRunning)
	c.waitClaimBound(t, ns, "data-web-0")
	harness.Eventually(t, waitTimeout, "web-0 wrote its id", func() (bool, string) {
		out := c.logs(t, ns, "web-0")
		return out == "wrote\n", out
	})
	// The controller makes web-0 again under the same name: wait for a
	// new UID, not for the name to be gone.
	if err := c.client.CoreV1().Pods(ns).Delete(ctx, "web-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, waitTimeout, "web-0 is re-created and finds its id", func() (bool, string) {
		p, err := c.client.CoreV1().Pods(ns).Get(ctx, "web-0", metav1.GetOptions{})
		if err != nil || p.UID == first.UID || p.Status.Phase != v1.PodRunning {
			return false, fmt.Sprint(err)
		}
		out := c.logs(t, ns, "web-0")
		return out == "found first\n", out
	})
}

func describeVolumeStats(vs []statsv1alpha1.VolumeStats) string {
	var out []string
	for _, v := range vs {
		out = append(out, fmt.Sprintf("%s: capacity %v used %v available %v", v.Name, deref(v.CapacityBytes), deref(v.UsedBytes), deref(v.AvailableBytes)))
	}
	return strings.Join(out, "; ")
}

func deref(p *uint64) any {
	if p == nil {
		return "unset"
	}
	return *p
}
