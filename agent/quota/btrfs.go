package quota

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// btrfs ioctls (linux/btrfs.h): _IOW(0x94, 14 / 15, struct
// btrfs_ioctl_vol_args) and _IOR(0x94, 43, struct
// btrfs_ioctl_qgroup_limit_args).
const (
	iocSubvolCreate = 0x5000940e
	iocSnapDestroy  = 0x5000940f
	iocQgroupLimit  = 0x8030942b
	// qgroupLimitMaxRfer limits the referenced bytes.
	qgroupLimitMaxRfer = 1
	// firstFreeObjectID is the inode number of every subvolume's root.
	firstFreeObjectID = 256
)

// volArgs is struct btrfs_ioctl_vol_args.
type volArgs struct {
	FD   int64
	Name [4088]byte
}

// qgroupLimitArgs is struct btrfs_ioctl_qgroup_limit_args.
type qgroupLimitArgs struct {
	QgroupID                                  uint64
	Flags, MaxRfer, MaxExcl, RsvRfer, RsvExcl uint64
}

// ensureSubvolume makes volume name a subvolume of root (when missing)
// and limits its qgroup to capacity. A plain directory already there (made
// before) is kept, unbounded.
func ensureSubvolume(root, name string, capacity int64) (Result, error) {
	path := filepath.Join(root, name)
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := subvolumeIoctl(root, name, iocSubvolCreate); err != nil {
			return Result{}, fmt.Errorf("creating btrfs subvolume %s: %w", path, err)
		}
	case err != nil:
		return Result{}, err
	case !st.IsDir():
		return Result{}, fmt.Errorf("%s is not a directory", path)
	}
	sub, err := isSubvolume(path)
	if err != nil {
		return Result{}, err
	}
	if !sub {
		return Result{Reason: path + " is a plain directory made before its btrfs subvolume could be: it is not bounded"}, nil
	}
	err = limitQgroup(path, capacity)
	switch {
	case errors.Is(err, unix.ENOTCONN):
		return Result{Reason: "quotas are off on the btrfs filesystem of the storage directory: run `btrfs quota enable " + root + "`"}, nil
	case err != nil:
		return Result{}, fmt.Errorf("limiting the qgroup of btrfs subvolume %s to %d bytes: %w", path, capacity, err)
	}
	return Result{Kind: BtrfsQgroup}, nil
}

// subvolumeIoctl creates or destroys subvolume name of directory parent.
func subvolumeIoctl(parent, name string, req uintptr) error {
	var args volArgs
	if len(name) >= len(args.Name) {
		return fmt.Errorf("subvolume name %q is too long", name)
	}
	copy(args.Name[:], name)
	f, err := os.Open(parent)
	if err != nil {
		return err
	}
	defer f.Close()
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(unsafe.Pointer(&args)))
	if errno != 0 {
		return errno
	}
	return nil
}

// destroySubvolume removes subvolume name of root with its content.
func destroySubvolume(root, name string) error {
	if err := subvolumeIoctl(root, name, iocSnapDestroy); err != nil {
		return fmt.Errorf("destroying btrfs subvolume %s: %w", filepath.Join(root, name), err)
	}
	return nil
}

// limitQgroup sets the referenced-bytes limit of the subvolume at path.
func limitQgroup(path string, capacity int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// QgroupID 0: the qgroup of the subvolume the ioctl is issued on.
	args := qgroupLimitArgs{Flags: qgroupLimitMaxRfer, MaxRfer: uint64(capacity)}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), iocQgroupLimit, uintptr(unsafe.Pointer(&args)))
	if errno != 0 {
		return errno
	}
	return nil
}

// isSubvolume: path is the root of a btrfs subvolume.
func isSubvolume(path string) (bool, error) {
	var fsst unix.Statfs_t
	if err := unix.Statfs(path, &fsst); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	if fsType(fsst.Type) != unix.BTRFS_SUPER_MAGIC {
		return false, nil
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Ino == firstFreeObjectID, nil
}
