package quota

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// More btrfs ioctls (linux/btrfs.h): _IOR(0x94, 31, struct
// btrfs_ioctl_fs_info_args) and _IOWR(0x94, 18, struct
// btrfs_ioctl_ino_lookup_args).
const (
	iocFSInfo    = 0x8400941f
	iocInoLookup = 0xd0009412
)

// fsInfoArgs is struct btrfs_ioctl_fs_info_args; only the fsid is read.
type fsInfoArgs struct {
	MaxID, NumDevices uint64
	FSID              [16]byte
	Rest              [1024 - 32]byte
}

// inoLookupArgs is struct btrfs_ioctl_ino_lookup_args.
type inoLookupArgs struct {
	TreeID, ObjectID uint64
	Name             [4080]byte
}

// Usage is what a bounded volume holds against its bound.
type Usage struct {
	Used, Limit int64
}

// sysfsBtrfs is where the kernel lists each btrfs filesystem's qgroups
// (/sys/fs/btrfs/FSID/qgroups/0_SUBVOLID/{referenced,max_referenced}).
var sysfsBtrfs = "/sys/fs/btrfs"

// VolumeUsage reads the bytes a volume directory holds against its
// capacity where a mechanism bounds it (a btrfs subvolume's qgroup); ok is
// false for a plain directory, whose usage is its filesystem's.
func VolumeUsage(path string) (u Usage, ok bool, err error) {
	sub, err := isSubvolume(path)
	if err != nil || !sub {
		return Usage{}, false, err
	}
	fsid, subvol, err := subvolumeIDs(path)
	if err != nil {
		return Usage{}, false, fmt.Errorf("btrfs subvolume %s: %w", path, err)
	}
	dir := filepath.Join(sysfsBtrfs, fsid, "qgroups", "0_"+strconv.FormatUint(subvol, 10))
	used, err := readSysfsInt(filepath.Join(dir, "referenced"))
	if errors.Is(err, fs.ErrNotExist) {
		return Usage{}, false, nil // quotas off, or a kernel without the qgroup files
	}
	if err != nil {
		return Usage{}, false, err
	}
	limit, err := readSysfsInt(filepath.Join(dir, "max_referenced"))
	if err != nil || limit <= 0 {
		return Usage{}, false, err // no limit set: not bounded
	}
	return Usage{Used: used, Limit: limit}, true, nil
}

// subvolumeIDs are the filesystem UUID and the subvolume id of the
// subvolume whose root is path.
func subvolumeIDs(path string) (fsid string, subvol uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	var info fsInfoArgs
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), iocFSInfo, uintptr(unsafe.Pointer(&info))); errno != 0 {
		return "", 0, fmt.Errorf("BTRFS_IOC_FS_INFO: %w", errno)
	}
	// TreeID 0: the tree of the subvolume the ioctl is issued on, which
	// the kernel writes back.
	look := inoLookupArgs{ObjectID: firstFreeObjectID}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), iocInoLookup, uintptr(unsafe.Pointer(&look))); errno != 0 {
		return "", 0, fmt.Errorf("BTRFS_IOC_INO_LOOKUP: %w", errno)
	}
	id := info.FSID
	return fmt.Sprintf("%x-%x-%x-%x-%x", id[0:4], id[4:6], id[6:8], id[8:10], id[10:16]), look.TreeID, nil
}

func readSysfsInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "none" {
		return 0, nil
	}
	return strconv.ParseInt(s, 10, 64)
}
