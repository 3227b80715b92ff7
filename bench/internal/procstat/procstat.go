// Package procstat reads the resource figures the benchmarks report from the
// Linux /proc file system.
package procstat

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Memory is a process's resident set as the kernel reports it.
type Memory struct {
	VmRSSKiB int64 `json:"vm_rss_kib"` // resident now
	VmHWMKiB int64 `json:"vm_hwm_kib"` // peak resident since start
	// RssAnonKiB is the private (anonymous) part of VmRSS: heap, stacks. The
	// rest is file-backed (the binary's pages, mmapped databases), shared
	// and reclaimable by the kernel. Optional: 0 where the kernel lacks it.
	RssAnonKiB int64 `json:"rss_anon_kib"`
}

// ReadMemory reads the resident set of process pid from /proc/PID/status.
func ReadMemory(pid int) (Memory, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	f, err := os.Open(path)
	if err != nil {
		return Memory{}, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	m, err := ParseStatus(f)
	if err != nil {
		return Memory{}, fmt.Errorf("parse %s: %w", path, err)
	}
	return m, nil
}

// ParseStatus extracts VmRSS and VmHWM (in kB) from /proc/PID/status.
func ParseStatus(r io.Reader) (Memory, error) {
	var m Memory
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM" && name != "RssAnon") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return m, fmt.Errorf("unexpected %s line %q", name, sc.Text())
		}
		v, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("%s value %q: %w", name, fields[0], err)
		}
		switch name {
		case "VmRSS":
			m.VmRSSKiB = v
			found++
		case "VmHWM":
			m.VmHWMKiB = v
			found++
		case "RssAnon":
			m.RssAnonKiB = v
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if found != 2 {
		return m, fmt.Errorf("VmRSS or VmHWM missing (process exited?)")
	}
	return m, nil
}

// MiB converts a figure in KiB (the kernel's "kB") to MiB.
func MiB(kib int64) float64 { return float64(kib) / 1024 }

// LoadAvg returns the 1-minute load average as /proc/loadavg spells it, or
// "?" where /proc is absent: the reports print it as a caveat, never compute
// with it.
func LoadAvg() string {
	return loadAvg("/proc/loadavg")
}

func loadAvg(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// ReadPSS returns process pid's proportional set size in KiB (from
// /proc/PID/smaps_rollup): private pages in full, shared pages divided by
// the number of processes sharing them. It is the fair way to add up the
// memory of processes that map the same binary.
func ReadPSS(pid int) (int64, error) {
	path := fmt.Sprintf("/proc/%d/smaps_rollup", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
			fields := strings.Fields(rest)
			if len(fields) != 2 {
				break
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no Pss line in %s", path)
}

// Children returns the PIDs of the running processes whose parent is ppid,
// with each one's command line (arguments separated by spaces).
func Children(ppid int) (map[int]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // exited meanwhile
		}
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 || fields[1] != strconv.Itoa(ppid) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out[pid] = strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return out, nil
}

// userHZ is the unit of the times in /proc/PID/stat: USER_HZ, which Linux
// fixes at 100 for user space whatever the kernel's tick rate.
const userHZ = 100

// CPUSeconds reads the CPU time (user + system) process pid has used so
// far, from /proc/PID/stat.
func CPUSeconds(pid int) (float64, error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	s, err := ParseStatCPU(string(b))
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return s, nil
}

// ParseStatCPU extracts utime + stime, in seconds, from a /proc/PID/stat
// line. The command name (field 2) may contain spaces and parentheses, so
// fields are counted from its last ')'.
func ParseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name in %q", stat)
	}
	// After the name: state (field 3) ... utime (14), stime (15).
	fields := strings.Fields(stat[i+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("too few fields in %q", stat)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time %q: %w", f, err)
		}
		ticks += v
	}
	return float64(ticks) / userHZ, nil
}

// Rollup is a process's memory from /proc/PID/smaps_rollup, in KiB.
type Rollup struct {
	RssKiB int64
	PssKiB int64
	// PrivateKiB is Private_Clean + Private_Dirty: the pages only this
	// process maps, which is what one more such process costs the machine.
	PrivateKiB int64
	// AnonKiB is the anonymous memory (heap, stacks, runtime): never
	// shared with a sibling process running the same binary.
	AnonKiB int64
}

// ReadRollup reads process pid's smaps_rollup.
func ReadRollup(pid int) (Rollup, error) {
	path := fmt.Sprintf("/proc/%d/smaps_rollup", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return Rollup{}, fmt.Errorf("read %s: %w", path, err)
	}
	r, err := ParseRollup(string(b))
	if err != nil {
		return Rollup{}, fmt.Errorf("parse %s: %w", path, err)
	}
	return r, nil
}

// ParseRollup extracts Rss, Pss, Anonymous and the private pages from
// smaps_rollup.
func ParseRollup(s string) (Rollup, error) {
	var r Rollup
	fields := map[string]*int64{"Rss": &r.RssKiB, "Pss": &r.PssKiB, "Anonymous": &r.AnonKiB, "Private_Clean": nil, "Private_Dirty": nil}
	seen := map[string]bool{}
	for _, line := range strings.Split(s, "\n") {
		name, rest, ok := strings.Cut(line, ":")
		dst, known := fields[name]
		if !ok || !known {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return r, fmt.Errorf("unexpected %s line %q", name, line)
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return r, fmt.Errorf("%s value %q: %w", name, f[0], err)
		}
		seen[name] = true
		if dst != nil {
			*dst = v
		} else {
			r.PrivateKiB += v
		}
	}
	for name := range fields {
		if !seen[name] {
			return r, fmt.Errorf("no %s line", name)
		}
	}
	return r, nil
}
