// Package pidfile records which process runs a Keelson component (an agent,
// its containerd) so that a later command finds that very process again,
// never another one that reused its PID: the file holds the PID and the
// process's start time, and a process matches only if both agree.
package pidfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a process as a PID file names it.
type Process struct {
	PID int
	// Start is the process's start time in clock ticks since boot
	// (/proc/PID/stat, field 22): with the PID, it names one process.
	Start uint64
}

// Write records the process pid in path (written whole or not at all).
func Write(path string, pid int) error {
	start, err := startTime(pid)
	if err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d\n", pid, start)), 0o600); err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	return nil
}

// Read returns the process path names; ok is false when there is no file.
func Read(path string) (p Process, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Process{}, false, nil
	}
	if err != nil {
		return Process{}, false, fmt.Errorf("pidfile: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return Process{}, false, fmt.Errorf("pidfile: %s: want \"PID START\", got %q", path, strings.TrimSpace(string(b)))
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return Process{}, false, fmt.Errorf("pidfile: %s: want \"PID START\", got %q", path, strings.TrimSpace(string(b)))
	}
	return Process{PID: pid, Start: start}, true, nil
}

// Alive reports whether the recorded process still runs (and is not a
// zombie): a PID reused by another process does not count.
func (p Process) Alive() bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "stat"))
	if err != nil {
		return false
	}
	f, ok := statFields(string(b))
	if !ok || f[0] == "Z" || f[0] == "X" {
		return false
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	return err == nil && start == p.Start
}

// Stop ends the process: SIGTERM, then SIGKILL once grace has passed, and
// waits until it is gone (or a minute more). A process already gone is no
// error.
func (p Process) Stop(grace time.Duration) error {
	if !p.Alive() {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	if p.waitGone(grace) {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
	if p.waitGone(time.Minute) {
		return nil
	}
	return fmt.Errorf("process %d did not exit after SIGKILL", p.PID)
}

func (p Process) waitGone(d time.Duration) bool {
	for deadline := time.Now().Add(d); ; {
		if !p.Alive() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	f, ok := statFields(string(b))
	if !ok {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// statFields returns the fields of /proc/PID/stat after the command name
// (which may hold spaces and parentheses): [0] is the state, [19] the
// start time.
func statFields(stat string) ([]string, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, false
	}
	f := strings.Fields(stat[i+1:])
	return f, len(f) > 19
}
