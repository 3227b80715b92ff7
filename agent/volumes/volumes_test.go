package volumes

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAtomicWriterSwapsTheWholeVolume(t *testing.T) {
	dir := t.TempDir()
	changed, err := writeAtomic(dir, map[string]File{"a": {Data: []byte("1"), Mode: 0o644}, "sub/b": {Data: []byte("2"), Mode: 0o600}}, -1)
	if err != nil || !changed {
		t.Fatalf("first write: %v %v", changed, err)
	}
	if read(t, filepath.Join(dir, "a")) != "1" || read(t, filepath.Join(dir, "sub", "b")) != "2" {
		t.Fatal("payload not visible")
	}
	if target, _ := os.Readlink(filepath.Join(dir, "a")); target != "..data/a" {
		t.Errorf("visible names must go through ..data: a -> %q", target)
	}
	if st, _ := os.Stat(filepath.Join(dir, "sub", "b")); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	// The same payload changes nothing.
	if changed, err := writeAtomic(dir, map[string]File{"a": {Data: []byte("1"), Mode: 0o644}, "sub/b": {Data: []byte("2"), Mode: 0o600}}, -1); err != nil || changed {
		t.Fatalf("unchanged payload rewritten: %v %v", changed, err)
	}
	// A new payload replaces it: a key that went away disappears.
	if _, err := writeAtomic(dir, map[string]File{"a": {Data: []byte("3"), Mode: 0o644}}, -1); err != nil {
		t.Fatal(err)
	}
	if read(t, filepath.Join(dir, "a")) != "3" {
		t.Error("update not visible")
	}
	if _, err := os.Lstat(filepath.Join(dir, "sub")); !os.IsNotExist(err) {
		t.Errorf("removed key still visible: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	payloads := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") && e.Name() != dataLink {
			payloads++
		}
	}
	if payloads != 1 {
		t.Errorf("%d payload directories left, want only the current one", payloads)
	}
	if _, err := writeAtomic(dir, map[string]File{"../escape": {Data: []byte("x")}}, -1); err == nil {
		t.Error("a path leaving the volume was accepted")
	}
}

func TestHostPathTypes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	typ := func(t v1.HostPathType) *v1.HostPathType { return &t }
	cases := []struct {
		path    string
		typ     *v1.HostPathType
		wantErr bool
	}{
		{filepath.Join(dir, "new-dir"), typ(v1.HostPathDirectoryOrCreate), false},
		{filepath.Join(dir, "new-file"), typ(v1.HostPathFileOrCreate), false},
		{dir, typ(v1.HostPathDirectory), false},
		{file, typ(v1.HostPathFile), false},
		{file, typ(v1.HostPathDirectory), true},
		{dir, typ(v1.HostPathFile), true},
		{filepath.Join(dir, "missing"), typ(v1.HostPathDirectory), true},
		{file, typ(v1.HostPathSocket), true},
		{filepath.Join(dir, "anything"), nil, false},
	}
	for _, tc := range cases {
		_, err := hostPath(&v1.HostPathVolumeSource{Path: tc.path, Type: tc.typ})
		if (err != nil) != tc.wantErr {
			t.Errorf("%s %v: err %v, want error %v", tc.path, tc.typ, err, tc.wantErr)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "new-dir")); err != nil || !st.IsDir() {
		t.Error("DirectoryOrCreate did not create the directory")
	}
}

func TestProjectedVolumeAndTokenRotation(t *testing.T) {
	client := fake.NewClientset(
		&v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: "ns"}, Data: map[string]string{"ca.crt": "CA"}},
		&v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"}, Data: map[string][]byte{"password": []byte("pw")}},
	)
	issued := 0
	client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authv1.TokenRequest)
		if tr.Spec.BoundObjectRef == nil || tr.Spec.BoundObjectRef.Kind != "Pod" || tr.Spec.BoundObjectRef.Name != "web" {
			t.Errorf("token not bound to the pod: %+v", tr.Spec.BoundObjectRef)
		}
		issued++
		tr.Status.Token = "token-" + string(rune('0'+issued))
		return true, tr, nil
	})
	clock := clockwork.NewFakeClock()
	m := New(Options{Client: client, Clock: clock})
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "uid-1", Labels: map[string]string{"app": "web"}},
		Spec: v1.PodSpec{
			ServiceAccountName: "default",
			Volumes: []v1.Volume{
				{Name: "api", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{DefaultMode: ptr.To[int32](0o644), Sources: []v1.VolumeProjection{
					{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3600)}},
					{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []v1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
					{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
				}}}},
				{Name: "labels", VolumeSource: v1.VolumeSource{DownwardAPI: &v1.DownwardAPIVolumeSource{Items: []v1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}},
				{Name: "optional", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "absent"}, Optional: ptr.To(true)}}},
				{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
			},
		},
	}
	if os.Getuid() != 0 {
		t.Skip("projected volumes are mounted on tmpfs, which needs root")
	}
	podDir := t.TempDir()
	t.Cleanup(func() {
		if err := m.Teardown(context.Background(), string(pod.UID), podDir); err != nil {
			t.Error(err)
		}
	})
	setup := func() map[string]Volume {
		t.Helper()
		vols, err := m.Setup(context.Background(), pod, podDir, Env{})
		if err != nil {
			t.Fatal(err)
		}
		return vols
	}
	vols := setup()
	api := vols["api"].Path
	if read(t, filepath.Join(api, "token")) != "token-1" || read(t, filepath.Join(api, "ca.crt")) != "CA" || read(t, filepath.Join(api, "namespace")) != "ns" {
		t.Errorf("projected volume content wrong")
	}
	if !vols["api"].ReadOnly || vols["scratch"].ReadOnly {
		t.Errorf("read-only flags %+v", vols)
	}
	if read(t, filepath.Join(vols["labels"].Path, "labels")) != `app="web"` {
		t.Errorf("labels file %q", read(t, filepath.Join(vols["labels"].Path, "labels")))
	}
	// Before 80% of its lifetime the token is kept; after, it is rotated.
	clock.Advance(40 * time.Minute)
	setup()
	if issued != 1 {
		t.Errorf("token re-requested too early (%d requests)", issued)
	}
	clock.Advance(10 * time.Minute)
	setup()
	if issued != 2 || read(t, filepath.Join(api, "token")) != "token-2" {
		t.Errorf("token not rotated after 80%% of its lifetime: %d requests, file %q", issued, read(t, filepath.Join(api, "token")))
	}
}
