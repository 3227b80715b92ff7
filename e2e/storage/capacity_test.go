package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/localstorage"
)

// TestCapacityEnforced: with the agent's storage directory on btrfs with
// quotas enabled, a local-path volume is a subvolume limited to its
// claim's size: writing past it fails in the container, an expansion
// raises the limit, the volume says its capacity is enforced, and deleting
// the claim destroys the subvolume.
func TestCapacityEnforced(t *testing.T) {
	nodeagent.Require(t)
	c := startCluster(t, btrfsStorage(t))
	ctx := context.Background()
	ns := c.namespace(t, "bounded")
	c.claim(t, ns, "data", "64Mi", nil)
	// write tries 100 MiB into the volume and reports how it ended; the
	// file goes (and is synced away) whatever happened.
	const write = `if dd if=/dev/zero of=/data/big bs=1M count=100 conv=fsync 2>/tmp/err; then echo WROTE; else echo FAILED; cat /tmp/err; fi; rm -f /data/big; sync`
	var pvName string
	t.Run("WritePastCapacityFails", func(t *testing.T) {
		c.shellPod(t, ns, "small", "data", write)
		c.waitPod(t, ns, "small", v1.PodSucceeded)
		out := c.logs(t, ns, "small")
		if !strings.HasPrefix(out, "FAILED") || !(strings.Contains(out, "Disk quota exceeded") || strings.Contains(out, "No space left")) {
			t.Errorf("writing 100Mi into a 64Mi volume printed %q, want EDQUOT or ENOSPC", out)
		}
		c.deletePod(t, ns, "small")
		pvc := c.waitClaimBound(t, ns, "data")
		pvName = pvc.Spec.VolumeName
		pv, err := c.client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pv.Annotations[localstorage.AnnCapacityEnforced] != "true" || pv.Annotations[localstorage.AnnCapacityEnforcement] != "btrfs-qgroup" {
			t.Errorf("volume annotations %v, want capacity enforced by btrfs-qgroup", pv.Annotations)
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(c.storageDir(), pvName), &st); err != nil || st.Ino != 256 {
			t.Errorf("the volume's directory is not a subvolume root (inode %d, %v)", st.Ino, err)
		}
	})
	t.Run("ExpansionRaisesTheLimit", func(t *testing.T) {
		c.expand(t, ns, "data", "128Mi")
		c.shellPod(t, ns, "large", "data", write)
		c.waitPod(t, ns, "large", v1.PodSucceeded)
		if out := c.logs(t, ns, "large"); out != "WROTE\n" {
			t.Errorf("writing 100Mi into the volume expanded to 128Mi printed %q", out)
		}
		c.deletePod(t, ns, "large")
	})
	t.Run("SummaryReportsTheBound", func(t *testing.T) {
		// The summary API reports a bounded volume as a filesystem of its
		// own: the claim's size as capacity, what it holds as used.
		c.shellPod(t, ns, "holder", "data", "dd if=/dev/zero of=/data/held bs=1M count=20 conv=fsync && sync && sleep 3600")
		c.waitVolumeStats(t, ns, "holder", "data", func(v statsv1alpha1.VolumeStats) bool {
			return v.CapacityBytes != nil && *v.CapacityBytes == 128<<20 && v.UsedBytes != nil && *v.UsedBytes >= 20<<20 &&
				v.AvailableBytes != nil && *v.AvailableBytes <= 108<<20
		})
		// And so do kubelet's volume metrics on the agent's /metrics.
		raw, err := c.kubeletGet(t, "/metrics")
		want := fmt.Sprintf(`kubelet_volume_stats_capacity_bytes{namespace=%q,persistentvolumeclaim="data"} 1.34217728e+08`, ns)
		if err != nil || !strings.Contains(string(raw), want) {
			t.Errorf("the agent's /metrics (%v) lacks %s", err, want)
		}
		c.deletePod(t, ns, "holder")
	})
	t.Run("DeletionDestroysTheSubvolume", func(t *testing.T) {
		if pvName == "" {
			t.Skip("no volume was provisioned")
		}
		if err := c.client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, "volume "+pvName, func() error {
			_, err := c.client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
			return err
		})
		if _, err := os.Stat(filepath.Join(c.storageDir(), pvName)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the subvolume is still there: %v", err)
		}
	})
}

// btrfsStorage makes a btrfs filesystem in a file, attaches it to a loop
// device, mounts it with quotas enabled and returns a storage directory on
// it; cleanups (run after the cluster's) unmount it and free the device.
func btrfsStorage(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"mkfs.btrfs", "btrfs", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: install btrfs-progs (and util-linux) to run this test", tool)
		}
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "btrfs.img"), filepath.Join(dir, "mnt")
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("truncate", "-s", "512M", img)
	run("mkfs.btrfs", "-q", "-f", img)
	dev := run("losetup", "--find", "--show", img)
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run("mount", dev, mnt)
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Logf("unmounting %s: %v; detaching it", mnt, err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	run("btrfs", "quota", "enable", mnt)
	return filepath.Join(mnt, "storage")
}
