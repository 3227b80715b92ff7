package testproc

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// RemoveCgroupTree kills every process left in a cgroup subtree (rel, e.g.
// a test agent's --cgroup-root: containers whose shim is gone keep running
// otherwise) and removes the subtree in every hierarchy. It reports
// whether some of it is left (processes not gone yet: call it again).
func RemoveCgroupTree(rel string) (left bool) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, r := range roots {
		dir := filepath.Join(r, rel)
		var dirs []string
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for _, d := range dirs {
			b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				left = true
			}
		}
	}
	return left
}
