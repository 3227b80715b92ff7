package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/snapshots"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/keelson/keelson/internal/testimage"
)

// importImage imports the test busybox as ref, with files (path: content)
// added in a layer of their own if any, through a tarball.
func importImage(t *testing.T, rt *Runtime, ref string, files map[string]string) {
	t.Helper()
	base, err := testimage.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	img := base
	if files != nil {
		if img, err = testimage.WithFiles(base, files); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "img.tar")
	if err := testimage.WriteTarball(path, ref, img); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := rt.Import(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != ref {
		t.Fatalf("imported %v, want [%s]", names, ref)
	}
}

// viewSnapshots lists the keys of the image views' snapshots.
func viewSnapshots(t *testing.T, rt *Runtime) []string {
	t.Helper()
	var keys []string
	err := rt.client.SnapshotService(rt.opts.Snapshotter).Walk(rt.ns(context.Background()), func(_ context.Context, info snapshots.Info) error {
		if strings.HasPrefix(info.Name, viewKeyPrefix) {
			keys = append(keys, info.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// An image view is the image's files, mounted read-only without noexec,
// once however often it is asked for; removing the owner's views unmounts
// them and removes their snapshots and lease. A one-layer image (a bind of
// its layer) and a two-layer one (an overlay) both work.
func TestImageViewMountedReadOnlyAndRemoved(t *testing.T) {
	rt := startRuntime(t, nil)
	ctx := context.Background()
	importImage(t, rt, "keelson.test/kitten:1", map[string]string{"data.json": `{"image": "kitten.jpg"}`, "etc/os-release": "NAME=test\n"})
	importImage(t, rt, "keelson.test/busybox:1", nil)
	podDir := t.TempDir()
	var paths []string
	for _, tc := range []struct{ ref, file, want string }{
		{"keelson.test/kitten:1", "data.json", "kitten.jpg"},
		{"keelson.test/busybox:1", "etc/passwd", "root:x:0:0"},
	} {
		ref, err := NormalizeImage(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(podDir, "volumes", "kubernetes.io~image", filepath.Base(tc.file))
		path, err := rt.MountImageView(ctx, "pod-1", ref, dir)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := rt.MountImageView(ctx, "pod-1", ref, dir); err != nil || again != path {
			t.Fatalf("second mount: %s %v, want %s again", again, err, path)
		}
		mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(path))
		if err != nil {
			t.Fatal(err)
		}
		if len(mounts) != 1 {
			t.Fatalf("%d mounts at %s, want 1", len(mounts), path)
		}
		if opts := strings.Split(mounts[0].Options, ","); !slices.Contains(opts, "ro") || slices.Contains(opts, "noexec") {
			t.Errorf("view of %s mounted with %q: want ro and no noexec", tc.ref, mounts[0].Options)
		}
		if b, err := os.ReadFile(filepath.Join(path, tc.file)); err != nil || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s in the view of %s: %q %v", tc.file, tc.ref, b, err)
		}
		if err := os.WriteFile(filepath.Join(path, "written"), nil, 0o644); !errors.Is(err, unix.EROFS) {
			t.Errorf("writing into the view of %s: %v, want EROFS", tc.ref, err)
		}
		paths = append(paths, path)
	}
	if owners, err := rt.ImageViewOwners(ctx); err != nil || !slices.Equal(owners, []string{"pod-1"}) {
		t.Fatalf("owners %v %v, want [pod-1]", owners, err)
	}
	if keys := viewSnapshots(t, rt); len(keys) != 2 {
		t.Fatalf("view snapshots %v, want 2", keys)
	}

	if err := rt.RemoveImageViews(ctx, "pod-1"); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("view %s still there after removal: %v", p, err)
		}
	}
	if keys := viewSnapshots(t, rt); len(keys) != 0 {
		t.Errorf("view snapshots %v left after removal", keys)
	}
	if owners, err := rt.ImageViewOwners(ctx); err != nil || len(owners) != 0 {
		t.Errorf("owners %v %v after removal, want none", owners, err)
	}
	if err := rt.RemoveImageViews(ctx, "pod-1"); err != nil {
		t.Errorf("removing again: %v", err)
	}
}
