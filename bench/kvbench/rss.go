package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// memory is a process's resident set as the kernel reports it.
type memory struct {
	VmRSSKiB int64 `json:"vm_rss_kib"` // resident now
	VmHWMKiB int64 `json:"vm_hwm_kib"` // peak resident since start
}

func readMemory(pid int) (memory, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	f, err := os.Open(path)
	if err != nil {
		return memory{}, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	m, err := parseStatus(f)
	if err != nil {
		return memory{}, fmt.Errorf("parse %s: %w", path, err)
	}
	return m, nil
}

// parseStatus extracts VmRSS and VmHWM (in kB) from /proc/PID/status.
func parseStatus(r io.Reader) (memory, error) {
	var m memory
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
