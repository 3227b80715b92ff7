package volumes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	"k8s.io/component-helpers/storage/volume"

	"github.com/keelson/keelson/internal/localstorage"
)

// ErrVolumeInUse is wrapped by the refusal to remove a volume a pod on
// this node still mounts.
var ErrVolumeInUse = errors.New("volume in use")

// ErrBadVolumeName is wrapped by the refusal of a name that is not a
// volume's.
var ErrBadVolumeName = errors.New("not a volume name")

// localVolume bind-mounts a local volume's directory at
// volumes/kubernetes.io~local-volume/<volume> in the pod's directory (read
// only when the pod says so) and, on the first mount, gives it the pod's
// fsGroup. The directory of a volume this node's local-path provisioner
// made is created here, on first use.
func (m *Manager) localVolume(pod *v1.Pod, cv ClaimVolume, pv *v1.PersistentVolume, podDir string, readOnly bool, gid int) (Volume, error) {
	src := filepath.Clean(pv.Spec.Local.Path)
	if err := m.ensureLocalDir(pv, src); err != nil {
		return Volume{}, err
	}
	target := filepath.Join(Dir(podDir), "kubernetes.io~local-volume", pv.Name)
	cv.Path = target
	m.trackLocal(pv.Name, string(pod.UID), cv)
	mounted, err := mountinfo.Mounted(target)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Volume{}, err
	}
	if mounted {
		return Volume{Path: target, ReadOnly: readOnly}, nil
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return Volume{}, err
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return Volume{}, fmt.Errorf("bind-mounting local volume %q (%s): %w", pv.Name, src, err)
	}
	if readOnly {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			_ = unix.Unmount(target, unix.MNT_DETACH)
			return Volume{}, fmt.Errorf("making local volume %q read-only: %w", pv.Name, err)
		}
	} else if gid >= 0 {
		var policy *v1.PodFSGroupChangePolicy
		if sc := pod.Spec.SecurityContext; sc != nil {
			policy = sc.FSGroupChangePolicy
		}
		if err := setOwnership(target, gid, policy); err != nil {
			return Volume{}, fmt.Errorf("giving local volume %q to fsGroup %d: %w", pv.Name, gid, err)
		}
	}
	return Volume{Path: target, ReadOnly: readOnly}, nil
}

// ensureLocalDir checks that a local volume's directory exists, creating
// it (writable by every user, as the containers' users are unknown) for a
// volume provisioned here, at the place this node said.
func (m *Manager) ensureLocalDir(pv *v1.PersistentVolume, path string) error {
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("path %s of local volume %q is not a directory", path, pv.Name)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	case !m.provisionedHere(pv, path):
		return fmt.Errorf("path %s of local volume %q does not exist on this node", path, pv.Name)
	}
	capacity := pv.Spec.Capacity[v1.ResourceStorage]
	_, err = m.EnsureLocalVolume(pv.Name, capacity.Value())
	return err
}

// EnsureLocalVolume makes the directory of local-path volume name in this
// node's storage directory if it is missing, bounded to capacity bytes
// where the filesystem can, and raises the bound of an existing one; the
// answer says whether the capacity is enforced, and how or why not.
func (m *Manager) EnsureLocalVolume(name string, capacity int64) (localstorage.VolumeState, error) {
	if err := localstorage.CheckVolumeName(name); err != nil {
		return localstorage.VolumeState{}, fmt.Errorf("%w: %v", ErrBadVolumeName, err)
	}
	if m.quota == nil {
		return localstorage.VolumeState{}, fmt.Errorf("this agent has no storage directory")
	}
	res, err := m.quota.Ensure(name, capacity)
	if err != nil {
		return localstorage.VolumeState{}, fmt.Errorf("the directory of volume %s: %w", name, err)
	}
	path := localstorage.VolumeDir(m.storageDir, name)
	if res.Enforced() {
		m.log.Info("local-path volume ready, capacity enforced", "volume", name, "path", path, "bytes", capacity, "enforcement", string(res.Kind))
	} else {
		m.log.Warn("local-path volume ready, capacity NOT enforced", "volume", name, "path", path, "bytes", capacity, "reason", res.Reason)
	}
	return localstorage.VolumeState{CapacityEnforced: res.Enforced(), Enforcement: string(res.Kind), Reason: res.Reason}, nil
}

// provisionedHere: the local-path provisioner made the volume for this
// node's storage directory.
func (m *Manager) provisionedHere(pv *v1.PersistentVolume, path string) bool {
	return m.storageDir != "" && pv.Annotations[volume.AnnDynamicallyProvisioned] == localstorage.Provisioner &&
		localstorage.CheckVolumeName(pv.Name) == nil && path == localstorage.VolumeDir(m.storageDir, pv.Name)
}

// ClaimVolume is a pod's volume backed by a claim, mounted at Path.
type ClaimVolume struct {
	// Name is the volume's name in the pod; Claim its claim.
	Name, Namespace, Claim string
	Path                   string
}

func (m *Manager) trackLocal(volumeName, podUID string, cv ClaimVolume) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.local[volumeName] == nil {
		m.local[volumeName] = map[string]bool{}
	}
	m.local[volumeName][podUID] = true
	if m.claims[podUID] == nil {
		m.claims[podUID] = map[string]ClaimVolume{}
	}
	m.claims[podUID][cv.Name] = cv
}

// untrackLocal forgets a pod's local volumes.
func (m *Manager) untrackLocal(podUID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, pods := range m.local {
		delete(pods, podUID)
		if len(pods) == 0 {
			delete(m.local, name)
		}
	}
	delete(m.claims, podUID)
}

// ClaimVolumes lists the pod's mounted local volumes, by name, for the
// volume statistics of the summary API.
func (m *Manager) ClaimVolumes(podUID string) []ClaimVolume {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ClaimVolume, 0, len(m.claims[podUID]))
	for _, cv := range m.claims[podUID] {
		out = append(out, cv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// RemoveLocalVolume removes the directory of local-path volume name from
// this node's storage directory, unless a pod here still uses it. Removing
// a directory that is already gone succeeds.
func (m *Manager) RemoveLocalVolume(name string) error {
	if err := localstorage.CheckVolumeName(name); err != nil {
		return fmt.Errorf("%w: %v", ErrBadVolumeName, err)
	}
	if m.quota == nil {
		return fmt.Errorf("this agent has no storage directory")
	}
	m.mu.Lock()
	var users []string
	for uid := range m.local[name] {
		users = append(users, uid)
	}
	m.mu.Unlock()
	if len(users) > 0 {
		sort.Strings(users)
		return fmt.Errorf("%w: volume %s is mounted by pod(s) %s on this node", ErrVolumeInUse, name, strings.Join(users, ", "))
	}
	dir := localstorage.VolumeDir(m.storageDir, name)
	if mounts, err := bindMountsOf(dir); err != nil {
		return err
	} else if len(mounts) > 0 {
		return fmt.Errorf("%w: volume %s is mounted at %s", ErrVolumeInUse, name, strings.Join(mounts, ", "))
	}
	if err := m.quota.Remove(name); err != nil {
		return err
	}
	m.log.Info("removed the directory of a local-path volume", "volume", name, "path", dir)
	return nil
}

// bindMountsOf lists where dir (or something in it) is bind-mounted: the
// mounts of its filesystem whose root is dir or below it.
func bindMountsOf(dir string) ([]string, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	all, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, err
	}
	// The filesystem dir lives on, and dir's path from its root.
	var home *mountinfo.Info
	for _, mnt := range all {
		if (dir == mnt.Mountpoint || strings.HasPrefix(dir, strings.TrimSuffix(mnt.Mountpoint, "/")+"/")) &&
			(home == nil || len(mnt.Mountpoint) > len(home.Mountpoint)) {
			home = mnt
		}
	}
	if home == nil {
		return nil, nil
	}
	rel, err := filepath.Rel(home.Mountpoint, dir)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(home.Root, rel)
	major, minor := unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)) //nolint:unconvert // Dev's type differs by arch
	var out []string
	for _, mnt := range all {
		if mnt.Major == int(major) && mnt.Minor == int(minor) && (mnt.Root == root || strings.HasPrefix(mnt.Root, root+"/")) {
			out = append(out, mnt.Mountpoint)
		}
	}
	return out, nil
}

// Permission bits kubelet adds for an fsGroup.
const (
	rwMask   = 0o660
	roMask   = 0o440
	execMask = 0o110
)

// setOwnership gives every file under dir to group gid with group
// read-write (directories also group-exec and setgid, so new files inherit
// the group), as kubelet does for volumes that support ownership. With
// fsGroupChangePolicy OnRootMismatch it does nothing when the root already
// has the group and the bits.
func setOwnership(dir string, gid int, policy *v1.PodFSGroupChangePolicy) error {
	if policy != nil && *policy == v1.FSGroupChangeOnRootMismatch && !ownershipNeeded(dir, gid) {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, -1, gid); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil || info.Mode()&os.ModeSymlink != 0 {
			return err
		}
		mode := info.Mode() | rwMask
		if info.IsDir() {
			mode |= os.ModeSetgid | execMask
		}
		return os.Chmod(path, mode)
	})
}

// ownershipNeeded: the root lacks the group, the bits or setgid.
func ownershipNeeded(dir string, gid int) bool {
	info, err := os.Stat(dir)
	if err != nil || !info.IsDir() {
		return true
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || int(st.Gid) != gid {
		return true
	}
	want := os.FileMode(rwMask | execMask)
	return info.Mode().Perm()&want != want || info.Mode()&os.ModeSetgid == 0
}
