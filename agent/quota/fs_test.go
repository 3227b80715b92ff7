package quota

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// loopFS makes a filesystem of size bytes with mkfs in a file and
// loop-mounts it (as root, with the tool installed; skipped otherwise).
func loopFS(t *testing.T, mkfs string, size int64, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to loop-mount a filesystem")
	}
	if _, err := exec.LookPath(mkfs); err != nil {
		t.Skipf("%s is not installed (btrfs-progs, xfsprogs)", mkfs)
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "img"), filepath.Join(dir, "mnt")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-f", img).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", mkfs, err, out)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"-o", "loop"}
	if opts != "" {
		args = []string{"-o", "loop," + opts}
	}
	if out, err := exec.Command("mount", append(args, img, mnt)...).CombinedOutput(); err != nil {
		t.Fatalf("mounting %s: %v: %s", img, err, out)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, 0) })
	return mnt
}

// write writes n MiB to path and returns the error that stopped it.
func write(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for range n {
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return f.Sync()
}

// TestBtrfsQgroup: a volume is a subvolume limited to its capacity; a
// larger capacity lets a larger write through; Remove destroys it with its
// content; with quotas off the volume is made, unbounded, and says why.
func TestBtrfsQgroup(t *testing.T) {
	mnt := loopFS(t, "mkfs.btrfs", 256<<20, "")
	d := New(filepath.Join(mnt, "storage"), nil)
	res, err := d.Ensure("off", 16<<20)
	if err != nil || res.Enforced() || !strings.Contains(res.Reason, "btrfs quota enable") {
		t.Fatalf("quotas off: %+v %v", res, err)
	}
	if out, err := exec.Command("btrfs", "quota", "enable", mnt).CombinedOutput(); err != nil {
		t.Fatalf("btrfs quota enable: %v: %s", err, out)
	}
	res, err = d.Ensure("pvc-1", 16<<20)
	if err != nil || res.Kind != BtrfsQgroup {
		t.Fatalf("Ensure: %+v %v", res, err)
	}
	file := filepath.Join(mnt, "storage", "pvc-1", "f")
	if err := write(file, 32); !errors.Is(err, unix.EDQUOT) {
		t.Fatalf("writing 32 MiB into a 16 MiB volume: %v, want EDQUOT", err)
	}
	dir := filepath.Dir(file)
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o777 {
		t.Fatalf("a new volume's directory: %v %v, want mode 0777", st.Mode(), err)
	}
	if err := os.Chmod(dir, 0o770|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Ensure("pvc-1", 64<<20); err != nil || !res.Enforced() {
		t.Fatalf("raising the limit: %+v %v", res, err)
	}
	if st, _ := os.Stat(dir); st.Mode()&os.ModeSetgid == 0 || st.Mode().Perm() != 0o770 {
		t.Errorf("raising the limit changed the mode (an fsGroup's) to %v", st.Mode())
	}
	if err := write(file, 32); err != nil {
		t.Fatalf("writing 32 MiB into a 64 MiB volume: %v", err)
	}
	// The qgroup's count is updated at commit: sync first.
	unix.Sync()
	u, ok, err := VolumeUsage(dir)
	if err != nil || !ok || u.Limit != 64<<20 || u.Used < 32<<20 || u.Used > 40<<20 {
		t.Errorf("VolumeUsage = %+v, %v, %v; want 32-40 MiB used of 64 MiB", u, ok, err)
	}
	if _, ok, err := VolumeUsage(mnt); ok || err != nil {
		t.Errorf("VolumeUsage of the filesystem's root (not a volume) = %v, %v; want not bounded", ok, err)
	}
	if err := d.Remove("pvc-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(file)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the subvolume is still there: %v", err)
	}
	if err := d.Remove("pvc-1"); err != nil {
		t.Errorf("removing a removed volume: %v", err)
	}
}

// TestXFSWithoutProjectQuotas: an xfs storage directory mounted without
// prjquota (the only way on a kernel without CONFIG_QUOTA) gets plain
// directories and a reason; project ids are read and written all the
// same, and allocation skips the taken ones.
func TestXFSWithoutProjectQuotas(t *testing.T) {
	mnt := loopFS(t, "mkfs.xfs", 320<<20, "")
	d := New(mnt, nil)
	res, err := d.Ensure("pvc-1", 16<<20)
	if err != nil || res.Enforced() || res.Reason == "" {
		t.Fatalf("Ensure on xfs without project quotas: %+v %v", res, err)
	}
	t.Logf("reason given: %s", res.Reason)
	path := filepath.Join(mnt, "pvc-1")
	if err := setXattr(path, fsxattr{ProjID: firstProjectID, XFlags: xflagProjInherit}); err != nil {
		t.Fatal(err)
	}
	used, err := projectIDs(mnt)
	if err != nil || !used[firstProjectID] {
		t.Fatalf("project ids %v %v", used, err)
	}
	if id, _ := nextProjectID(used); id != firstProjectID+1 {
		t.Errorf("next project id %d, want %d", id, firstProjectID+1)
	}
	if err := d.Remove("pvc-1"); err != nil {
		t.Fatal(err)
	}
}
