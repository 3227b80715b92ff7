package volumes

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/component-helpers/storage/volume"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/internal/localstorage"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root")
	}
}

func boundClaim(name, pv string) *v1.PersistentVolumeClaim {
	return &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("claim-" + name)},
		Spec:       v1.PersistentVolumeClaimSpec{VolumeName: pv},
		Status:     v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound},
	}
}

func pinnedVolume(name, node string, src v1.PersistentVolumeSource) *v1.PersistentVolume {
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeSource: src,
			ClaimRef:               &v1.ObjectReference{Namespace: "ns", Name: "data", UID: "claim-data"},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{node}}},
			}}}},
		},
	}
}

func claimPod(uid string, vol v1.VolumeSource, fsGroup *int64) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: types.UID("pod-" + uid)},
		Spec:       v1.PodSpec{Volumes: []v1.Volume{{Name: "data", VolumeSource: vol}}, SecurityContext: &v1.PodSecurityContext{FSGroup: fsGroup}},
	}
}

func claimSource(name string, readOnly bool) v1.VolumeSource {
	return v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: name, ReadOnly: readOnly}}
}

var nodeEnv = Env{NodeName: "n1", NodeLabels: map[string]string{v1.LabelHostname: "n1"}}

func newClaimManager(storageDir string, objs ...runtime.Object) *Manager {
	return New(Options{Client: fake.NewClientset(objs...), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), StorageDir: storageDir})
}

// TestClaimVolumeRefusals: what keeps a pod's containers from starting.
func TestClaimVolumeRefusals(t *testing.T) {
	hostPathSrc := v1.PersistentVolumeSource{HostPath: &v1.HostPathVolumeSource{Path: t.TempDir()}}
	pending := boundClaim("data", "")
	pending.Status.Phase = v1.ClaimPending
	cases := []struct {
		name string
		objs []runtime.Object
		want string
	}{
		{"claim missing", nil, `persistentvolumeclaim "data" not found`},
		{"claim not bound", []runtime.Object{pending}, `persistentvolumeclaim "data" is not bound (phase Pending): waiting for its volume`},
		{"volume pinned elsewhere", []runtime.Object{boundClaim("data", "pv"), pinnedVolume("pv", "n2", hostPathSrc)},
			`persistentvolume "pv" is pinned by its nodeAffinity to nodes with kubernetes.io/hostname In [n2], and this node "n1" is not one of them`},
		{"volume bound to another claim", []runtime.Object{boundClaim("data", "pv"), func() *v1.PersistentVolume {
			pv := pinnedVolume("pv", "n1", hostPathSrc)
			pv.Spec.ClaimRef.UID = "someone-else"
			return pv
		}()}, `persistentvolume "pv" is not bound to claim "data"`},
		{"a local path that is not there", []runtime.Object{boundClaim("data", "pv"),
			pinnedVolume("pv", "n1", v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/nonexistent/keelson-test"}})},
			"path /nonexistent/keelson-test of local volume \"pv\" does not exist on this node"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newClaimManager(t.TempDir(), tc.objs...)
			_, err := m.Setup(context.Background(), claimPod("1", claimSource("data", false), nil), t.TempDir(), nodeEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	m := newClaimManager(t.TempDir(), boundClaim("data", "pv"), pinnedVolume("pv", "n2", hostPathSrc))
	_, err := m.Setup(context.Background(), claimPod("1", claimSource("data", false), nil), t.TempDir(), nodeEnv)
	if !errors.Is(err, ErrNodeAffinity) {
		t.Errorf("affinity conflict %v is not ErrNodeAffinity", err)
	}
}

// TestHostPathClaim: a hostPath volume is used in place, read-only when
// the pod says so.
func TestHostPathClaim(t *testing.T) {
	dir := t.TempDir()
	m := newClaimManager("", boundClaim("data", "pv"), pinnedVolume("pv", "n1", v1.PersistentVolumeSource{HostPath: &v1.HostPathVolumeSource{Path: dir}}))
	vols, err := m.Setup(context.Background(), claimPod("1", claimSource("data", true), nil), t.TempDir(), nodeEnv)
	if err != nil {
		t.Fatal(err)
	}
	if v := vols["data"]; v.Path != dir || !v.ReadOnly {
		t.Errorf("volume %+v, want %s read-only", v, dir)
	}
}

// TestLocalPathVolumeLifecycle: the agent makes a provisioned volume's
// directory on first mount, bind-mounts it with the pod's fsGroup, refuses
// to remove it while mounted and removes it once the pod is gone.
func TestLocalPathVolumeLifecycle(t *testing.T) {
	requireRoot(t)
	storage := filepath.Join(t.TempDir(), "storage")
	name := "pvc-0c6e2d3a"
	pv := pinnedVolume(name, "n1", v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: localstorage.VolumeDir(storage, name)}})
	pv.Annotations = map[string]string{volume.AnnDynamicallyProvisioned: localstorage.Provisioner}
	pv.Spec.Capacity = v1.ResourceList{v1.ResourceStorage: resource.MustParse("64Mi")}
	m := newClaimManager(storage, boundClaim("data", name), pv)
	podDir := t.TempDir()
	pod := claimPod("1", claimSource("data", false), ptr.To[int64](1234))
	vols, err := m.Setup(context.Background(), pod, podDir, nodeEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountAll(Dir(podDir)) })
	target := vols["data"].Path
	if want := filepath.Join(Dir(podDir), "kubernetes.io~local-volume", name); target != want {
		t.Fatalf("mounted at %s, want %s", target, want)
	}
	if ok, _ := mountinfo.Mounted(target); !ok {
		t.Fatal("not bind-mounted")
	}
	if err := os.WriteFile(filepath.Join(target, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(localstorage.VolumeDir(storage, name), "f")
	if b, err := os.ReadFile(data); err != nil || string(b) != "x" {
		t.Fatalf("write through the mount not in the volume's directory: %q %v", b, err)
	}
	st, _ := os.Stat(localstorage.VolumeDir(storage, name))
	if gid := st.Sys().(*syscall.Stat_t).Gid; gid != 1234 || st.Mode()&os.ModeSetgid == 0 || st.Mode().Perm()&0o070 != 0o070 {
		t.Errorf("directory gid %d mode %v, want fsGroup 1234 with group rwx and setgid", gid, st.Mode())
	}
	if _, err := m.Setup(context.Background(), pod, podDir, nodeEnv); err != nil {
		t.Fatalf("a second sync: %v", err)
	}
	if cvs := m.ClaimVolumes(string(pod.UID)); len(cvs) != 1 || cvs[0] != (ClaimVolume{Name: "data", Namespace: "ns", Claim: "data", Path: target}) {
		t.Errorf("claim volumes %+v, want data at %s", cvs, target)
	}
	if err := m.RemoveLocalVolume(name); !errors.Is(err, ErrVolumeInUse) {
		t.Fatalf("removal while mounted: %v, want ErrVolumeInUse", err)
	}
	if err := m.Teardown(context.Background(), string(pod.UID), podDir); err != nil {
		t.Fatal(err)
	}
	if cvs := m.ClaimVolumes(string(pod.UID)); len(cvs) != 0 {
		t.Errorf("claim volumes %+v after teardown", cvs)
	}
	if err := m.RemoveLocalVolume(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(localstorage.VolumeDir(storage, name)); !os.IsNotExist(err) {
		t.Errorf("directory still there: %v", err)
	}
	if err := m.RemoveLocalVolume(name); err != nil {
		t.Errorf("removing an absent directory: %v", err)
	}
	if err := m.RemoveLocalVolume("../etc"); !errors.Is(err, ErrBadVolumeName) {
		t.Errorf("a path as a name: %v", err)
	}
}

// TestBindMountsOfSeesForeignMounts: a bind mount the agent did not make
// itself (say, before a restart) still keeps the directory.
func TestBindMountsOfSeesForeignMounts(t *testing.T) {
	requireRoot(t)
	src := filepath.Join(t.TempDir(), "vol")
	target := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(filepath.Join(src, "sub"), target, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(target, syscall.MNT_DETACH)
	got, err := bindMountsOf(src)
	if err != nil || len(got) != 1 || got[0] != target {
		t.Fatalf("bind mounts of %s: %v %v, want [%s]", src, got, err, target)
	}
	if other, _ := bindMountsOf(t.TempDir()); len(other) != 0 {
		t.Errorf("an unrelated directory is mounted at %v", other)
	}
}

// TestOwnershipOnRootMismatch: with OnRootMismatch a root that already has
// the group and bits is left alone (files below keep theirs); otherwise
// every file gets the group and group read-write.
func TestOwnershipOnRootMismatch(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	gidOf := func(p string) (uint32, os.FileMode) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Gid, st.Mode()
	}
	onMismatch := ptr.To(v1.FSGroupChangeOnRootMismatch)
	if err := setOwnership(dir, 4321, onMismatch); err != nil {
		t.Fatal(err)
	}
	if gid, mode := gidOf(file); gid != 4321 || mode.Perm() != 0o660 {
		t.Fatalf("file gid %d mode %v after a mismatching root, want 4321 0660", gid, mode)
	}
	if gid, mode := gidOf(dir); gid != 4321 || mode&os.ModeSetgid == 0 || mode.Perm()&0o070 != 0o070 {
		t.Fatalf("root gid %d mode %v", gid, mode)
	}
	// A file changed behind the volume's back is not visited again while
	// the root matches, as kubelet skips it.
	if err := os.Chown(file, -1, 0); err != nil {
		t.Fatal(err)
	}
	if err := setOwnership(dir, 4321, onMismatch); err != nil {
		t.Fatal(err)
	}
	if gid, _ := gidOf(file); gid != 0 {
		t.Errorf("OnRootMismatch walked a matching root (file gid %d)", gid)
	}
	if err := setOwnership(dir, 4321, nil); err != nil {
		t.Fatal(err)
	}
	if gid, _ := gidOf(file); gid != 4321 {
		t.Errorf("the default policy (Always) left file gid %d", gid)
	}
}
