package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// procMemory is one process's resident set as the kernel reports it.
type procMemory struct {
	Name     string `json:"name"`
	PID      int    `json:"pid"`
	VmRSSKiB int64  `json:"vm_rss_kib"` // resident now
	VmHWMKiB int64  `json:"vm_hwm_kib"` // peak resident since start
}

// memorySet is the memory of every process of one side at one moment.
type memorySet struct {
	Processes []procMemory `json:"processes"`
	// Sums over the processes. The summed HWM is the sum of each process's
	// own peak, an upper bound on the peak of the sum.
	VmRSSKiB int64 `json:"vm_rss_kib"`
	VmHWMKiB int64 `json:"vm_hwm_kib"`
}

func readMemorySet(procs []*proc) (memorySet, error) {
	var s memorySet
	for _, p := range procs {
		m, err := readMemory(p.pid())
		if err != nil {
			return s, p.failure(err)
		}
		m.Name = p.name
		s.Processes = append(s.Processes, m)
		s.VmRSSKiB += m.VmRSSKiB
		s.VmHWMKiB += m.VmHWMKiB
	}
	return s, nil
}

func readMemory(pid int) (procMemory, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	f, err := os.Open(path)
	if err != nil {
		return procMemory{}, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	m, err := parseStatus(f)
	if err != nil {
		return m, fmt.Errorf("parse %s: %w", path, err)
	}
	m.PID = pid
	return m, nil
}

// parseStatus extracts VmRSS and VmHWM (in kB) from /proc/PID/status.
func parseStatus(r io.Reader) (procMemory, error) {
	var m procMemory
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
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
		if name == "VmRSS" {
			m.VmRSSKiB = v
		} else {
			m.VmHWMKiB = v
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if found != 2 {
		return m, fmt.Errorf("VmRSS or VmHWM missing (process exited?)")
	}
	return m, nil
}
