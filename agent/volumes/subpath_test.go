package volumes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to bind-mount")
	}
}

// subPathVolume makes a pod directory with a volume holding a/etc/marker.
func subPathVolume(t *testing.T) (podDir, vol string) {
	t.Helper()
	podDir = t.TempDir()
	vol = filepath.Join(podDir, "volumes", "kubernetes.io~empty-dir", "data")
	if err := os.MkdirAll(filepath.Join(vol, "a", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "a", "etc", "marker"), []byte("volume"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := UnmountAll(SubPathDir(podDir)); err != nil {
			t.Error(err)
		}
	})
	return podDir, vol
}

func TestSubPathMountsTheOpenedDirectory(t *testing.T) {
	needRoot(t)
	podDir, vol := subPathVolume(t)
	target, err := SubPath(podDir, "data", vol, "c", 0, "a/etc")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(target, SubPathDir(podDir)) {
		t.Fatalf("mounted at %s, outside the pod's subPath directory", target)
	}
	if b, err := os.ReadFile(filepath.Join(target, "marker")); err != nil || string(b) != "volume" {
		t.Fatalf("marker through the mount: %q %v", b, err)
	}
	// Mounting again (a restarted container) replaces the mount.
	if _, err := SubPath(podDir, "data", vol, "c", 0, "a/etc"); err != nil {
		t.Fatal(err)
	}
	// A missing subPath is created inside the volume.
	target, err = SubPath(podDir, "data", vol, "c", 1, "new/dir")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(vol, "new", "dir")); err != nil || !fi.IsDir() {
		t.Fatalf("missing subPath not created: %v", err)
	}
	if err := os.WriteFile(filepath.Join(vol, "new", "dir", "f"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "new" {
		t.Fatalf("created subPath not mounted: %q %v", b, err)
	}
	// A file subPath through an in-volume symlink (as configMap keys are).
	if err := os.Symlink("a/etc/marker", filepath.Join(vol, "key")); err != nil {
		t.Fatal(err)
	}
	target, err = SubPath(podDir, "data", vol, "c", 2, "key")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "volume" {
		t.Fatalf("file subPath: %q %v", b, err)
	}
	if err := UnmountAll(SubPathDir(podDir)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(filepath.Join(SubPathDir(podDir), "data", "c", "0", "marker")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("subPath mount survived UnmountAll: %v", err)
	}
}

func TestSubPathSymlinkOutsideRefused(t *testing.T) {
	needRoot(t)
	podDir, vol := subPathVolume(t)
	for name, target := range map[string]string{"abs": "/etc", "rel": "../../../../../../../../../etc"} {
		if err := os.Symlink(target, filepath.Join(vol, name)); err != nil {
			t.Fatal(err)
		}
		_, err := SubPath(podDir, "data", vol, "c", 0, name)
		if err == nil || !strings.Contains(err.Error(), "outside the volume") {
			t.Fatalf("subPath %s -> %s: %v, want a refusal saying it leads outside the volume", name, target, err)
		}
	}
	for _, bad := range []string{"/etc", "a/../../x", ".."} {
		if _, err := SubPath(podDir, "data", vol, "c", 0, bad); err == nil || !strings.Contains(err.Error(), "relative path without '..'") {
			t.Fatalf("subPath %q: %v", bad, err)
		}
	}
}

// TestSubPathRaceNeverMountsHostRoot plays the container of
// CVE-2021-25741: while the agent mounts a/etc, it swaps the directory a
// with a symlink to / (atomically, so a always exists) as fast as it can.
// Every mount that succeeds must be the volume's a/etc, never the host's.
func TestSubPathRaceNeverMountsHostRoot(t *testing.T) {
	needRoot(t)
	podDir, vol := subPathVolume(t)
	a, link := filepath.Join(vol, "a"), filepath.Join(vol, "a.link")
	if err := os.Symlink("/", link); err != nil {
		t.Fatal(err)
	}
	var hostEtc unix.Stat_t
	if err := unix.Stat("/etc", &hostEtc); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			_ = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, link, unix.RENAME_EXCHANGE)
		}
	})
	mounted, refused := 0, 0
	for i := 0; i < 2000; i++ {
		target, err := SubPath(podDir, "data", vol, "c", 0, "a/etc")
		if err != nil {
			refused++
			continue
		}
		mounted++
		var st unix.Stat_t
		serr := unix.Stat(target, &st)
		_, merr := os.Stat(filepath.Join(target, "marker"))
		if serr != nil || merr != nil || st.Dev == hostEtc.Dev && st.Ino == hostEtc.Ino {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("attempt %d mounted something other than the volume's a/etc (the host's /etc: %v): %v %v", i, st.Ino == hostEtc.Ino, serr, merr)
		}
	}
	stop.Store(true)
	wg.Wait()
	if mounted == 0 || refused == 0 {
		t.Fatalf("%d mounted, %d refused: the race never hit one side, the test proved nothing", mounted, refused)
	}
	t.Logf("%d mounts of the volume's directory, %d refused while a component was a symlink", mounted, refused)
}

// TestWalkNoFollowRefusesSymlinks checks the fallback for kernels without
// openat2 under the same race: the handle is the volume's a/etc or an error.
func TestWalkNoFollowRefusesSymlinks(t *testing.T) {
	_, vol := subPathVolume(t)
	root, err := os.OpenFile(vol, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := os.Symlink("/etc", filepath.Join(vol, "out")); err != nil {
		t.Fatal(err)
	}
	if _, err := walkNoFollow(root, "out"); !errors.Is(err, unix.ELOOP) {
		t.Fatalf("a symlink component: %v, want ELOOP", err)
	}
	a, link := filepath.Join(vol, "a"), filepath.Join(vol, "a.link")
	if err := os.Symlink("/", link); err != nil {
		t.Fatal(err)
	}
	var volEtc unix.Stat_t
	if err := unix.Stat(filepath.Join(a, "etc"), &volEtc); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			_ = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, link, unix.RENAME_EXCHANGE)
		}
	})
	defer func() { stop.Store(true); wg.Wait() }()
	opened := 0
	for i := 0; i < 2000; i++ {
		f, err := walkNoFollow(root, "a/etc")
		if err != nil {
			continue
		}
		opened++
		var st unix.Stat_t
		err = unix.Fstat(int(f.Fd()), &st)
		f.Close()
		if err != nil || st.Ino != volEtc.Ino || st.Dev != volEtc.Dev {
			t.Fatalf("attempt %d opened something other than the volume's a/etc: %v", i, err)
		}
	}
	if opened == 0 {
		t.Fatal("no open succeeded: the test proved nothing")
	}
}
