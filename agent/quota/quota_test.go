package quota

import (
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The ioctl and quotactl arguments must have the kernel's sizes, which
// the request numbers encode.
func TestKernelStructSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"btrfs_ioctl_vol_args", unsafe.Sizeof(volArgs{}), 4096},
		{"btrfs_ioctl_qgroup_limit_args", unsafe.Sizeof(qgroupLimitArgs{}), 48},
		{"btrfs_ioctl_fs_info_args", unsafe.Sizeof(fsInfoArgs{}), 1024},
		{"btrfs_ioctl_ino_lookup_args", unsafe.Sizeof(inoLookupArgs{}), 4096},
		{"fsxattr", unsafe.Sizeof(fsxattr{}), 28},
		{"if_dqblk", unsafe.Sizeof(ifDQBlk{}), 72},
		{"if_dqinfo", unsafe.Sizeof(ifDQInfo{}), 24},
	} {
		if c.got != c.want {
			t.Errorf("%s is %d bytes, the kernel's is %d", c.name, c.got, c.want)
		}
	}
	for _, c := range []struct {
		name     string
		req      uintptr
		size     uintptr
		dir, typ uintptr
	}{
		{"BTRFS_IOC_SUBVOL_CREATE", iocSubvolCreate, 4096, 1, 0x94},
		{"BTRFS_IOC_SNAP_DESTROY", iocSnapDestroy, 4096, 1, 0x94},
		{"BTRFS_IOC_QGROUP_LIMIT", iocQgroupLimit, 48, 2, 0x94},
		{"FS_IOC_FSGETXATTR", iocFSGetXattr, 28, 2, 'X'},
		{"FS_IOC_FSSETXATTR", iocFSSetXattr, 28, 1, 'X'},
	} {
		if c.req>>30 != c.dir || c.req>>16&0x3fff != c.size || c.req>>8&0xff != c.typ {
			t.Errorf("%s = %#x does not encode direction %d, size %d, type %#x", c.name, c.req, c.dir, c.size, c.typ)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		name     string
		magic    int64
		quotaErr error
		kind     Kind
		reason   string
	}{
		{"btrfs", unix.BTRFS_SUPER_MAGIC, nil, BtrfsQgroup, ""},
		{"xfs with prjquota", unix.XFS_SUPER_MAGIC, nil, ProjectQuota, ""},
		{"ext4 with prjquota", unix.EXT4_SUPER_MAGIC, nil, ProjectQuota, ""},
		{"kernel without quotas", unix.EXT4_SUPER_MAGIC, unix.ENOSYS, None, "CONFIG_QUOTA"},
		{"xfs without prjquota", unix.XFS_SUPER_MAGIC, unix.ESRCH, None, "mount it with -o prjquota"},
		{"ext4 without prjquota", unix.EXT4_SUPER_MAGIC, unix.ESRCH, None, "tune2fs -O project,quota"},
		{"unreadable quotas", unix.XFS_SUPER_MAGIC, unix.EPERM, None, "cannot be read"},
		{"tmpfs", unix.TMPFS_MAGIC, nil, None, "offers no per-directory limit"},
	} {
		kind, reason := classify(c.magic, c.quotaErr)
		if kind != c.kind || (c.reason == "") != (reason == "") || !strings.Contains(reason, c.reason) {
			t.Errorf("%s: got %q %q, want %q with %q", c.name, kind, reason, c.kind, c.reason)
		}
	}
}

func TestNextProjectID(t *testing.T) {
	if id, err := nextProjectID(map[uint32]bool{0: true, 5: true}); err != nil || id != firstProjectID {
		t.Errorf("empty storage dir: %d %v", id, err)
	}
	used := map[uint32]bool{firstProjectID: true, firstProjectID + 1: true, firstProjectID + 3: true}
	if id, err := nextProjectID(used); err != nil || id != firstProjectID+2 {
		t.Errorf("a freed id is reused first: got %d %v", id, err)
	}
}
