package node

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// machine is what the agent reads of the host it runs on.
type machine struct {
	cpus        int
	memoryBytes int64
	machineID   string
	systemUUID  string
	bootID      string
	kernel      string
	osImage     string
	arch        string
}

func readMachine() (machine, error) {
	m := machine{cpus: goruntime.NumCPU(), arch: goruntime.GOARCH}
	mem, err := meminfo()
	if err != nil {
		return m, err
	}
	m.memoryBytes = mem["MemTotal"]
	m.machineID = readTrim("/etc/machine-id")
	if m.machineID == "" {
		m.machineID = readTrim("/var/lib/dbus/machine-id")
	}
	m.systemUUID = strings.ToLower(readTrim("/sys/class/dmi/id/product_uuid"))
	m.bootID = readTrim("/proc/sys/kernel/random/boot_id")
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		m.kernel = string(bytes.TrimRight(u.Release[:], "\x00"))
	}
	m.osImage = osImage()
	return m, nil
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// osImage is PRETTY_NAME from os-release, as kubelet reports it.
func osImage() string {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				return strings.Trim(v, `"'`)
			}
		}
	}
	return "Linux"
}

// meminfo reads /proc/meminfo in bytes.
func meminfo() (map[string]int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	return out, sc.Err()
}

// disk is a filesystem's size and free space in bytes.
type disk struct{ capacity, available int64 }

func statfs(path string) (disk, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return disk{}, fmt.Errorf("node: statfs %s: %w", path, err)
	}
	return disk{capacity: int64(st.Blocks) * st.Bsize, available: int64(st.Bavail) * st.Bsize}, nil
}

// pids returns the PID limit and how many are in use.
func pids() (max, used int64, err error) {
	max, err = strconv.ParseInt(readTrim("/proc/sys/kernel/pid_max"), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("node: pid_max: %w", err)
	}
	// The fourth field of loadavg is running/total scheduling entities.
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 4 {
		return 0, 0, fmt.Errorf("node: unexpected /proc/loadavg")
	}
	_, total, _ := strings.Cut(f[3], "/")
	used, err = strconv.ParseInt(total, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("node: /proc/loadavg: %w", err)
	}
	return max, used, nil
}
