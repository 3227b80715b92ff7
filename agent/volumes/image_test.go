package volumes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeViews stands for the runtime's image views: a view is a directory
// holding the image's files under the given directory.
type fakeViews struct {
	files     map[string]string // the image's content
	mounted   map[string]string // path -> owner
	removed   []string          // owners whose views were removed
	removeErr error
}

func (f *fakeViews) MountImageView(_ context.Context, owner, ref, dir string) (string, error) {
	path := filepath.Join(dir, "chain")
	for name, data := range f.files {
		p := filepath.Join(path, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, []byte(data), 0o444); err != nil {
			return "", err
		}
	}
	f.mounted[path] = owner + " " + ref
	return path, nil
}

func (f *fakeViews) RemoveImageViews(_ context.Context, owner string) error {
	if f.removeErr != nil {
		return f.removeErr
	}
	f.removed = append(f.removed, owner)
	return nil
}

func imagePod() *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"},
		Spec: v1.PodSpec{Volumes: []v1.Volume{
			{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
			{Name: "img", VolumeSource: v1.VolumeSource{Image: &v1.ImageVolumeSource{Reference: "registry.example/kitten:1.8", PullPolicy: v1.PullAlways}}},
		}},
	}
}

// Setup leaves image volumes to MountImage (their image is pulled first);
// the pod's other volumes are set up as ever.
func TestSetupLeavesImageVolumesOut(t *testing.T) {
	m := New(Options{Images: &fakeViews{mounted: map[string]string{}}})
	vols, err := m.Setup(context.Background(), imagePod(), t.TempDir(), Env{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := vols["scratch"]; !ok || len(vols) != 1 {
		t.Fatalf("volumes %v: want only the emptyDir", vols)
	}
}

// An image volume is the runtime's view, below the pod's volume directory,
// owned by the pod, read-only; Teardown removes the pod's views, and keeps
// failing (so the pod's cleanup is retried) while the runtime cannot.
func TestMountImageAndTeardown(t *testing.T) {
	views := &fakeViews{files: map[string]string{"data.json": `{"image": "kitten.jpg"}`}, mounted: map[string]string{}}
	m := New(Options{Images: views})
	pod := imagePod()
	podDir := t.TempDir()
	vol, err := m.MountImage(context.Background(), pod, podDir, "img", "registry.example/kitten:1.8")
	if err != nil {
		t.Fatal(err)
	}
	if !vol.ReadOnly || !vol.Image || !strings.HasPrefix(vol.Path, ImageDir(podDir, "img")+"/") {
		t.Fatalf("volume %+v: want a read-only image volume below %s", vol, ImageDir(podDir, "img"))
	}
	if got := views.mounted[vol.Path]; got != "uid-1 registry.example/kitten:1.8" {
		t.Fatalf("view at %s mounted for %q, want the pod's UID and the image", vol.Path, got)
	}
	if b, err := os.ReadFile(filepath.Join(vol.Path, "data.json")); err != nil || !strings.Contains(string(b), "kitten.jpg") {
		t.Fatalf("data.json in the volume: %q %v", b, err)
	}

	views.removeErr = errors.New("containerd is away")
	if err := m.Teardown(context.Background(), "uid-1", podDir); err == nil || !strings.Contains(err.Error(), "containerd is away") {
		t.Fatalf("Teardown with the runtime failing: %v, want its error", err)
	}
	views.removeErr = nil
	if err := m.Teardown(context.Background(), "uid-1", podDir); err != nil {
		t.Fatal(err)
	}
	if len(views.removed) != 1 || views.removed[0] != "uid-1" {
		t.Fatalf("views removed for %v, want the pod's", views.removed)
	}
}

func TestMountImageWithoutRuntime(t *testing.T) {
	m := New(Options{})
	_, err := m.MountImage(context.Background(), imagePod(), t.TempDir(), "img", "registry.example/kitten:1.8")
	if err == nil || !strings.Contains(err.Error(), "image volumes need a container runtime") {
		t.Fatalf("err %v", err)
	}
}

// An image volume's subPath must be a directory of the image: nothing is
// created in a read-only view, and a file cannot be mounted.
func TestImageSubPath(t *testing.T) {
	needRoot(t)
	podDir, vol := subPathVolume(t) // holds a/etc/marker
	target, err := ImageSubPath(podDir, "img", vol, "c", 0, "a/etc")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "marker")); err != nil || string(b) != "volume" {
		t.Fatalf("marker through the subPath mount: %q %v", b, err)
	}
	for _, tc := range []struct{ sub, want string }{
		{"missing/dir", "does not exist in image volume"},
		{"a/etc/marker", "is not a directory"},
		{"../outside", "without '..'"},
	} {
		_, err := ImageSubPath(podDir, "img", vol, "c", 1, tc.sub)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("subPath %q: %v, want an error saying %q", tc.sub, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(vol, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing image subPath was created in the volume: %v", err)
	}
}
