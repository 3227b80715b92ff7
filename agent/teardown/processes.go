package teardown

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/keelson/keelson/agent/runtime"
)

// cgroupFS is where the cgroup hierarchies are mounted.
const cgroupFS = "/sys/fs/cgroup"

// cgroupDirs lists the pods' cgroup directories in every hierarchy,
// parents before children; none when the cgroup root is the host's own.
func (c *cleanup) cgroupDirs() []string {
	rel := filepath.Clean("/" + c.host.CgroupRoot)
	if c.host.CgroupRoot == "" || rel == "/" {
		return nil // never the whole host
	}
	roots, _ := filepath.Glob(cgroupFS + "/*")
	roots = append(roots, cgroupFS)
	var dirs []string
	for _, r := range roots {
		_ = filepath.WalkDir(filepath.Join(r, rel), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	return dirs
}

// killPods kills every process left in the pods' cgroups: what containerd
// could not remove (it would not start, or a shim was gone).
func (c *cleanup) killPods() {
	for _, d := range c.cgroupDirs() {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					c.report.Killed = append(c.report.Killed, pid)
				}
			}
		}
	}
}

// removeCgroups removes the pods' cgroups, children first, waiting a
// little for killed processes to leave them.
func (c *cleanup) removeCgroups() error {
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		left = left[:0]
		dirs := c.cgroupDirs()
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
				left = append(left, dirs[i])
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("cgroups still in use: %s", strings.Join(left, ", "))
	}
	return nil
}

// killShims kills the shims of the agent's own containerd, found by its
// socket on their command line: once the containers are gone or killed,
// nothing else would end them.
func (c *cleanup) killShims() {
	if c.host.Containerd != "" {
		return // an external containerd's shims are its own
	}
	socket := []byte(runtime.DaemonSocket(c.containerdDir()))
	for _, pid := range processes(func(argv [][]byte) bool {
		return slices.ContainsFunc(argv, func(a []byte) bool { return bytes.Equal(a, socket) })
	}) {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			c.report.Killed = append(c.report.Killed, pid)
		}
	}
}

// processes returns the PIDs of the processes whose command line matches.
func processes(match func(argv [][]byte) bool) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 || !match(bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsBelow lists the mount points strictly below dir, deepest first.
func mountsBelow(dir string) ([]string, error) {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	var out []string
	for _, m := range ms {
		if m.Mountpoint != dir {
			out = append(out, m.Mountpoint)
		}
	}
	// Deepest first; a point mounted twice is listed twice, each
	// unmount removing the top one.
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// unmount unmounts everything below the agent dir: the pods' network
// namespaces, volumes and root filesystems.
func (c *cleanup) unmount() error {
	points, err := mountsBelow(c.agentDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", p, err))
			continue
		}
		c.report.Unmounted = append(c.report.Unmounted, p)
	}
	return errors.Join(errs...)
}
