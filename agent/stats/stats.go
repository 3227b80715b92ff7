// Package stats reads resource usage from the kernel for the kubelet
// summary API: containers' CPU and memory from their cgroups (v1 or v2),
// the node's from /proc, and filesystems' from statfs. Rates (nano-cores)
// come from the difference between two reads.
package stats

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

// Usage is a cumulative CPU time and current memory of a cgroup or the node.
type Usage struct {
	Time          time.Time
	CPUNanos      uint64 // cumulative CPU time
	MemoryUsage   uint64
	WorkingSet    uint64 // usage minus inactive file cache
	RSS           uint64
	MemoryLimit   uint64 // 0: none
	MemoryFailcnt uint64
}

// unified reports whether the host mounts cgroup v2, asked once: every
// container read of every scrape needs it.
var unified = sync.OnceValue(func() bool {
	_, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers"))
	return err == nil
})

// Cgroup reads the usage of the cgroup at path (cgroupfs path, e.g.
// /keelson/pod<uid>/<id>).
func Cgroup(path string) (Usage, error) {
	u := Usage{Time: time.Now()}
	if unified() {
		dir := filepath.Join(cgroupRoot, path)
		st, err := keyValues(filepath.Join(dir, "cpu.stat"))
		if err != nil {
			return u, err
		}
		u.CPUNanos = st["usage_usec"] * 1000
		u.MemoryUsage, _ = readUint(filepath.Join(dir, "memory.current"))
		mem, _ := keyValues(filepath.Join(dir, "memory.stat"))
		u.RSS = mem["anon"]
		u.WorkingSet = sub(u.MemoryUsage, mem["inactive_file"])
		if max, err := readUint(filepath.Join(dir, "memory.max")); err == nil {
			u.MemoryLimit = max
		}
		return u, nil
	}
	cpu, err := readUint(filepath.Join(cgroupRoot, "cpuacct", path, "cpuacct.usage"))
	if err != nil {
		return u, err
	}
	u.CPUNanos = cpu
	mdir := filepath.Join(cgroupRoot, "memory", path)
	u.MemoryUsage, _ = readUint(filepath.Join(mdir, "memory.usage_in_bytes"))
	mem, _ := keyValues(filepath.Join(mdir, "memory.stat"))
	u.RSS = mem["total_rss"]
	u.WorkingSet = sub(u.MemoryUsage, mem["total_inactive_file"])
	u.MemoryFailcnt, _ = readUint(filepath.Join(mdir, "memory.failcnt"))
	if l, err := readUint(filepath.Join(mdir, "memory.limit_in_bytes")); err == nil && l < 1<<62 {
		u.MemoryLimit = l
	}
	return u, nil
}

// Populated reports whether a process runs in the cgroup at path (as for
// Cgroup): false once its container's process exited, even while the
// cgroup itself is still there.
func Populated(path string) bool {
	if unified() {
		ev, err := keyValues(filepath.Join(cgroupRoot, path, "cgroup.events"))
		return err == nil && ev["populated"] == 1
	}
	b, err := os.ReadFile(filepath.Join(cgroupRoot, "cpuacct", path, "cgroup.procs"))
	return err == nil && len(strings.TrimSpace(string(b))) > 0
}

// Node reads the whole machine's usage.
func Node() (Usage, error) {
	u := Usage{Time: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return u, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return u, fmt.Errorf("stats: unexpected /proc/stat")
	}
	var busy uint64
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += n
	}
	u.CPUNanos = busy * uint64(time.Second/100) // USER_HZ is 100 on Linux
	mem, err := keyValues("/proc/meminfo")
	if err != nil {
		return u, err
	}
	total, avail := mem["MemTotal"]*1024, mem["MemAvailable"]*1024
	u.MemoryUsage = sub(total, mem["MemFree"]*1024)
	u.WorkingSet = sub(total, avail)
	u.RSS = sub(total, avail)
	u.MemoryLimit = total
	return u, nil
}

// FS is a filesystem's capacity and use in bytes and inodes.
type FS struct {
	Capacity, Available, Used uint64
	Inodes, InodesFree        uint64
}

// Filesystem reads the filesystem holding path.
func Filesystem(path string) (FS, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return FS{}, err
	}
	bs := uint64(st.Bsize)
	return FS{
		Capacity: st.Blocks * bs, Available: st.Bavail * bs, Used: (st.Blocks - st.Bfree) * bs,
		Inodes: st.Files, InodesFree: st.Ffree,
	}, nil
}

// Rates turns cumulative CPU times into nano-cores between two reads of
// the same thing.
type Rates struct {
	mu   sync.Mutex
	last map[string]Usage
}

// NanoCores records u for key and returns the CPU rate since key's
// previous read, or false on the first.
func (r *Rates) NanoCores(key string, u Usage) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]Usage{}
	}
	prev, ok := r.last[key]
	r.last[key] = u
	if !ok || !u.Time.After(prev.Time) || u.CPUNanos < prev.CPUNanos {
		return 0, false
	}
	return uint64(float64(u.CPUNanos-prev.CPUNanos) / u.Time.Sub(prev.Time).Seconds()), true
}

// Forget drops keys not in keep.
func (r *Rates) Forget(keep map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.last {
		if !keep[k] {
			delete(r.last, k)
		}
	}
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, fmt.Errorf("no limit")
	}
	return strconv.ParseUint(s, 10, 64)
}

func keyValues(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.Replace(sc.Text(), ":", " ", 1))
		if len(fields) < 2 {
			continue
		}
		n, err := strconv.ParseUint(fields[1], 10, 64)
		if err == nil {
			out[fields[0]] = n
		}
	}
	return out, sc.Err()
}
