package main

import (
	"slices"
	"time"
)

// percentile returns the q-quantile (0 < q <= 1) of sorted by the
// nearest-rank method, or 0 for an empty slice.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted)) + 0.999999999)
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summarize merges the passes of w (which together aimed at w.Total puts)
// into one result: throughput is puts over summed busy time, percentiles are
// over every put of every pass.
func summarize(w workload, passes ...sample) result {
	var all []time.Duration
	var elapsed time.Duration
	conns := 0
	for _, p := range passes {
		for _, l := range p.lat {
			all = append(all, l...)
		}
		elapsed += p.elapsed
		conns = p.conns
	}
	slices.Sort(all)
	r := result{
		Workload:   w.Name,
		Clients:    w.Clients,
		Conns:      conns,
		Puts:       len(all),
		ElapsedSec: elapsed.Seconds(),
		P50Ms:      ms(percentile(all, 0.50)),
		P99Ms:      ms(percentile(all, 0.99)),
		P999Ms:     ms(percentile(all, 0.999)),
		Truncated:  len(all) < w.Total,
	}
	if len(all) > 0 {
		r.MaxMs = ms(all[len(all)-1])
	}
	if elapsed > 0 {
		r.PutsPerSec = float64(len(all)) / elapsed.Seconds()
	}
	return r
}
