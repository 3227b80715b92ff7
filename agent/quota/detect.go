package quota

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// detect says which mechanism the filesystem holding root offers, and
// when none, why.
func detect(root string) (Kind, string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return None, "", fmt.Errorf("statfs %s: %w", root, err)
	}
	var quotaErr error
	if fsType(st.Type) == unix.XFS_SUPER_MAGIC || fsType(st.Type) == unix.EXT4_SUPER_MAGIC {
		quotaErr = projectQuotaState(root)
	}
	kind, reason := classify(fsType(st.Type), quotaErr)
	return kind, reason, nil
}

// fsType widens statfs's f_type, whose Go type differs by architecture.
func fsType[T int32 | int64 | uint32](t T) int64 { return int64(t) }

// classify is detect's decision: magic is the filesystem's statfs type,
// quotaErr the answer to a project-quota state query (xfs and ext4 only).
func classify(magic int64, quotaErr error) (Kind, string) {
	switch magic {
	case unix.BTRFS_SUPER_MAGIC:
		return BtrfsQgroup, ""
	case unix.XFS_SUPER_MAGIC, unix.EXT4_SUPER_MAGIC:
		name := map[int64]string{unix.XFS_SUPER_MAGIC: "xfs", unix.EXT4_SUPER_MAGIC: "ext4"}[magic]
		switch {
		case quotaErr == nil:
			return ProjectQuota, ""
		case errors.Is(quotaErr, unix.ENOSYS):
			return None, "the storage directory is on " + name + " but this kernel has no quota support (CONFIG_QUOTA): put it on btrfs with quotas enabled"
		case errors.Is(quotaErr, unix.ESRCH), errors.Is(quotaErr, unix.ENOENT):
			if name == "xfs" {
				return None, "project quotas are off on the xfs filesystem of the storage directory: mount it with -o prjquota"
			}
			return None, "project quotas are off on the ext4 filesystem of the storage directory: `tune2fs -O project,quota` it and mount it with -o prjquota"
		default:
			return None, fmt.Sprintf("project quotas of the %s filesystem of the storage directory cannot be read: %v", name, quotaErr)
		}
	}
	return None, fmt.Sprintf("the storage directory's filesystem (type %#x) offers no per-directory limit: put it on btrfs (with quotas enabled), or xfs or ext4 mounted with prjquota", magic)
}

// quotactl commands and the project quota type (linux/quota.h).
const (
	qGetInfo   = 0x800005
	qSetQuota  = 0x800008
	prjQuota   = 2
	qifBLimits = 1
	// qifBlockSize is the unit of if_dqblk's block limits.
	qifBlockSize = 1024
)

func qcmd(cmd, typ uint32) uintptr { return uintptr(cmd<<8 | typ&0xff) }

// ifDQInfo is struct if_dqinfo.
type ifDQInfo struct {
	BGrace, IGrace uint64
	Flags, Valid   uint32
}

// ifDQBlk is struct if_dqblk.
type ifDQBlk struct {
	BHardLimit, BSoftLimit, CurSpace  uint64
	IHardLimit, ISoftLimit, CurInodes uint64
	BTime, ITime                      uint64
	Valid                             uint32
	_                                 uint32
}

// quotactlFD is quotactl_fd(2) on the filesystem holding path.
func quotactlFD(path string, cmd uintptr, id uint32, addr unsafe.Pointer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, _, errno := unix.Syscall6(unix.SYS_QUOTACTL_FD, f.Fd(), cmd, uintptr(id), uintptr(addr), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// projectQuotaState is nil when project quotas are on for the filesystem
// holding root.
func projectQuotaState(root string) error {
	var info ifDQInfo
	return quotactlFD(root, qcmd(qGetInfo, prjQuota), 0, unsafe.Pointer(&info))
}
