package main

import (
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/internal/testproc"
)

// procMemory is one process's resident set as the kernel reports it.
type procMemory struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	procstat.Memory
}

// memorySet is the memory of every process of one side at one moment.
type memorySet struct {
	Processes []procMemory `json:"processes"`
	// Sums over the processes. The summed HWM is the sum of each process's
	// own peak, an upper bound on the peak of the sum.
	VmRSSKiB int64 `json:"vm_rss_kib"`
	VmHWMKiB int64 `json:"vm_hwm_kib"`
}

func readMemorySet(procs []*testproc.Process) (memorySet, error) {
	var s memorySet
	for _, p := range procs {
		m, err := procstat.ReadMemory(p.PID())
		if err != nil {
			return s, p.Failure(err)
		}
		s.Processes = append(s.Processes, procMemory{Name: p.Name, PID: p.PID(), Memory: m})
		s.VmRSSKiB += m.VmRSSKiB
		s.VmHWMKiB += m.VmHWMKiB
	}
	return s, nil
}
