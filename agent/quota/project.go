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

// FS_IOC_FSGETXATTR and FS_IOC_FSSETXATTR (linux/fs.h): _IOR / _IOW('X',
// 31 / 32, struct fsxattr).
const (
	iocFSGetXattr = 0x801c581f
	iocFSSetXattr = 0x401c5820
	// xflagProjInherit makes new files and directories inherit the
	// directory's project id, so everything in a volume counts against it.
	xflagProjInherit = 0x200
)

// fsxattr is struct fsxattr.
type fsxattr struct {
	XFlags, ExtSize, NExtents, ProjID, CowExtSize uint32
	_                                             [8]byte
}

// Project ids of volumes start at firstProjectID, above the small ids an
// administrator's /etc/projid usually holds.
const (
	firstProjectID = 1 << 20
	maxProjectID   = 1<<32 - 2
)

// ensureProject makes volume name a directory with a project id of its
// own (when it has none) and sets that project's hard block limit to
// capacity.
func ensureProject(root, name string, capacity int64) (Result, error) {
	path := filepath.Join(root, name)
	if err := os.Mkdir(path, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
		return Result{}, fmt.Errorf("creating %s: %w", path, err)
	}
	attr, err := getXattr(path)
	if err != nil {
		return Result{}, err
	}
	if attr.ProjID == 0 {
		used, err := projectIDs(root)
		if err != nil {
			return Result{}, err
		}
		id, err := nextProjectID(used)
		if err != nil {
			return Result{}, err
		}
		attr.ProjID, attr.XFlags = id, attr.XFlags|xflagProjInherit
		if err := setXattr(path, attr); err != nil {
			return Result{}, fmt.Errorf("giving %s project id %d: %w", path, id, err)
		}
	}
	blocks := (uint64(capacity) + qifBlockSize - 1) / qifBlockSize
	q := ifDQBlk{BHardLimit: blocks, BSoftLimit: blocks, Valid: qifBLimits}
	if err := quotactlFD(path, qcmd(qSetQuota, prjQuota), attr.ProjID, unsafe.Pointer(&q)); err != nil {
		return Result{}, fmt.Errorf("setting the quota of project %d (%s) to %d bytes: %w", attr.ProjID, path, capacity, err)
	}
	return Result{Kind: ProjectQuota}, nil
}

// projectIDs lists the project ids the volumes under root hold.
func projectIDs(root string) (map[uint32]bool, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	used := map[uint32]bool{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		attr, err := getXattr(filepath.Join(root, e.Name()))
		if err != nil {
			return nil, err
		}
		used[attr.ProjID] = true
	}
	return used, nil
}

// nextProjectID is the smallest volume project id not in used.
func nextProjectID(used map[uint32]bool) (uint32, error) {
	for id := uint32(firstProjectID); id <= maxProjectID; id++ {
		if !used[id] {
			return id, nil
		}
	}
	return 0, fmt.Errorf("every volume project id from %d is taken", firstProjectID)
}

func getXattr(path string) (fsxattr, error) {
	var attr fsxattr
	err := xattrIoctl(path, iocFSGetXattr, &attr)
	if err != nil {
		return attr, fmt.Errorf("reading the project id of %s: %w", path, err)
	}
	return attr, nil
}

func setXattr(path string, attr fsxattr) error { return xattrIoctl(path, iocFSSetXattr, &attr) }

func xattrIoctl(path string, req uintptr, attr *fsxattr) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(unsafe.Pointer(attr)))
	if errno != 0 {
		return errno
	}
	return nil
}
