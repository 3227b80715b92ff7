package volumes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// SubPathDir is where a pod's subPath mounts live, beside its volumes and
// out of every container's reach (kubelet's volume-subpaths).
func SubPathDir(podDir string) string { return filepath.Join(podDir, "volume-subpaths") }

// SubPath makes the subPath sub of the volume at volPath available at a
// path no container can tamper with, and returns that path for the
// container's bind mount.
//
// A container that shares the volume may swap any component of sub for a
// symlink at any time (CVE-2021-25741). So the subPath is resolved once
// (symlinks inside the volume, such as a configMap's, are followed; one
// leading outside is refused), then opened component by component with no
// symlink allowed beneath the volume's root, and the opened file — not a
// path — is bind-mounted through /proc/self/fd. A swap after the check
// makes the open fail; it can never redirect the mount.
func SubPath(podDir, volume, volPath, container string, index int, sub string) (string, error) {
	return subPath(podDir, volume, volPath, container, index, sub, false)
}

// ImageSubPath is SubPath for an image volume, which is read-only: the
// subPath must exist in the image and be a directory, as containerd's CRI
// requires (mounting a single file of an image is not supported).
func ImageSubPath(podDir, volume, volPath, container string, index int, sub string) (string, error) {
	return subPath(podDir, volume, volPath, container, index, sub, true)
}

func subPath(podDir, volume, volPath, container string, index int, sub string, image bool) (string, error) {
	if filepath.IsAbs(sub) || slices.Contains(strings.Split(filepath.ToSlash(sub), "/"), "..") {
		return "", fmt.Errorf("subPath %q must be a relative path without '..'", sub)
	}
	root, err := os.OpenFile(volPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("subPath %q: opening volume %q: %w", sub, volume, err)
	}
	defer root.Close()
	rel, err := resolveInVolume(root, volPath, volume, sub, !image)
	if err != nil {
		return "", err
	}
	f, err := openBeneath(root, rel)
	if err != nil {
		return "", fmt.Errorf("subPath %q of volume %q: %w (a path component changed while it was mounted; retried at the next sync)", sub, volume, err)
	}
	defer f.Close()
	if image {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return "", fmt.Errorf("subPath %q of image volume %q: %w", sub, volume, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return "", fmt.Errorf("subPath %q of image volume %q is not a directory: only a directory of an image can be mounted", sub, volume)
		}
	}
	target := filepath.Join(SubPathDir(podDir), volume, container, strconv.Itoa(index))
	if err := bindFD(f, target); err != nil {
		return "", fmt.Errorf("subPath %q of volume %q: %w", sub, volume, err)
	}
	return target, nil
}

// resolveInVolume follows sub's symlinks and returns the resolved path
// relative to the volume, creating missing directories inside the volume
// as kubelet does if create is set. A subPath resolving outside the volume
// is refused.
func resolveInVolume(root *os.File, volPath, volume, sub string, create bool) (string, error) {
	base, err := filepath.EvalSymlinks(volPath)
	if err != nil {
		return "", fmt.Errorf("subPath %q: volume %q: %w", sub, volume, err)
	}
	resolved, err := filepath.EvalSymlinks(filepath.Join(volPath, sub))
	if errors.Is(err, os.ErrNotExist) && !create {
		return "", fmt.Errorf("subPath %q does not exist in image volume %q: an image volume is read-only, so a subPath must name a directory of the image", sub, volume)
	}
	if errors.Is(err, os.ErrNotExist) {
		d, merr := pathrs.MkdirAllHandle(root, sub, 0o777)
		if merr != nil {
			return "", fmt.Errorf("subPath %q: creating it in volume %q: %w", sub, volume, merr)
		}
		d.Close()
		resolved, err = filepath.EvalSymlinks(filepath.Join(volPath, sub))
	}
	if err != nil {
		return "", fmt.Errorf("subPath %q of volume %q: %w", sub, volume, err)
	}
	rel, err := filepath.Rel(base, resolved)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("subPath %q of volume %q resolves to %s, outside the volume: a subPath may not lead out of its volume through a symlink", sub, volume, resolved)
	}
	return rel, nil
}

// openBeneath opens rel under root as an O_PATH handle, refusing any
// symlink on the way and anything that would leave root: openat2 with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS, or, on
// kernels without it (before 5.6), an O_NOFOLLOW walk one component at a
// time.
func openBeneath(root *os.File, rel string) (*os.File, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(int(root.Fd()), rel, &how)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(root.Name(), rel)), nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
		return nil, fmt.Errorf("opening %s beneath the volume: %w", rel, err)
	}
	return walkNoFollow(root, rel)
}

// walkNoFollow opens rel one component at a time from root with
// O_PATH|O_NOFOLLOW, refusing a component that is a symlink.
func walkNoFollow(root *os.File, rel string) (*os.File, error) {
	cur, err := unix.Dup(int(root.Fd()))
	if err != nil {
		return nil, err
	}
	for _, part := range strings.Split(filepath.Clean(rel), "/") {
		if part == "." || part == "" {
			continue
		}
		if part == ".." {
			unix.Close(cur)
			return nil, fmt.Errorf("%s leaves the volume", rel)
		}
		next, err := unix.Openat(cur, part, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(cur)
		if err != nil {
			return nil, fmt.Errorf("opening %s beneath the volume: %w", rel, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			unix.Close(next)
			return nil, err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			unix.Close(next)
			return nil, fmt.Errorf("opening %s beneath the volume: %s is a symlink: %w", rel, part, unix.ELOOP)
		}
		cur = next
	}
	return os.NewFile(uintptr(cur), filepath.Join(root.Name(), rel)), nil
}

// bindFD bind-mounts the file f refers to at target (created as a
// directory or an empty file like it), replacing an earlier mount there.
func bindFD(f *os.File, target string) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return err
	}
	// A container restarted with this mount gets it anew: drop the old one.
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting the previous subPath mount %s: %w", target, err)
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if fi, err := os.Lstat(target); err == nil && fi.IsDir() != isDir {
		if err := os.Remove(target); err != nil {
			return err
		}
	}
	if isDir {
		if err := os.Mkdir(target, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	} else {
		t, err := os.OpenFile(target, os.O_CREATE|os.O_RDONLY, 0o640)
		if err != nil {
			return err
		}
		t.Close()
	}
	src := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mounting the opened subPath at %s: %w", target, err)
	}
	return nil
}
