package main

import (
	"slices"
)

// sideOrder is the order of the sides in round r: as given in even rounds,
// reversed in odd ones, so a side is not always the one that runs while the
// machine's other load drifts up (or down).
func sideOrder(sides []string, r int) []string {
	order := slices.Clone(sides)
	if r%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

// median returns the median of vs (the mean of the middle two for an even
// count), or 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianReport merges the rounds of one side: every figure is the median of
// that figure over the rounds, taken independently, so the merged report need
// not equal any one round. The load averages span the first and last rounds.
func medianReport(rs []sideReport) sideReport {
	m := rs[0]
	if len(rs) == 1 {
		return m
	}
	of := func(get func(sideReport) float64) float64 {
		vs := make([]float64, len(rs))
		for i, r := range rs {
			vs[i] = get(r)
		}
		return median(vs)
	}
	m.ReadySec = of(func(r sideReport) float64 { return r.ReadySec })
	m.Stages = slices.Clone(m.Stages)
	for i := range m.Stages {
		m.Stages[i].Seconds = of(func(r sideReport) float64 { return r.Stages[i].Seconds })
	}
	c := &m.Create
	c.CreatesPerSec = of(func(r sideReport) float64 { return r.Create.CreatesPerSec })
	c.ElapsedSec = of(func(r sideReport) float64 { return r.Create.ElapsedSec })
	c.P50Ms = of(func(r sideReport) float64 { return r.Create.P50Ms })
	c.P99Ms = of(func(r sideReport) float64 { return r.Create.P99Ms })
	c.P999Ms = of(func(r sideReport) float64 { return r.Create.P999Ms })
	c.MaxMs = of(func(r sideReport) float64 { return r.Create.MaxMs })
	c.Creates = int(of(func(r sideReport) float64 { return float64(r.Create.Creates) }))
	for _, r := range rs {
		c.Truncated = c.Truncated || r.Create.Truncated
	}
	m.Idle = medianMemory(rs, func(r sideReport) memorySet { return r.Idle })
	m.Loaded = medianMemory(rs, func(r sideReport) memorySet { return r.Loaded })
	m.LoadAvgAfter = rs[len(rs)-1].LoadAvgAfter
	return m
}

func medianMemory(rs []sideReport, get func(sideReport) memorySet) memorySet {
	kib := func(f func(memorySet) int64) int64 {
		vs := make([]float64, len(rs))
		for i, r := range rs {
			vs[i] = float64(f(get(r)))
		}
		return int64(median(vs))
	}
	m := get(rs[0])
	m.Processes = slices.Clone(m.Processes)
	for i := range m.Processes {
		m.Processes[i].PID = 0 // differs per round
		m.Processes[i].VmRSSKiB = kib(func(s memorySet) int64 { return s.Processes[i].VmRSSKiB })
		m.Processes[i].VmHWMKiB = kib(func(s memorySet) int64 { return s.Processes[i].VmHWMKiB })
	}
	m.VmRSSKiB = kib(func(s memorySet) int64 { return s.VmRSSKiB })
	m.VmHWMKiB = kib(func(s memorySet) int64 { return s.VmHWMKiB })
	return m
}
