package main

import (
	"time"

	"github.com/keelson/keelson/bench/internal/latency"
)

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
	s := latency.Summarize(all)
	return result{
		Workload:   w.Name,
		Clients:    w.Clients,
		Conns:      conns,
		Puts:       len(all),
		ElapsedSec: elapsed.Seconds(),
		PutsPerSec: latency.Rate(len(all), elapsed),
		P50Ms:      s.P50Ms,
		P99Ms:      s.P99Ms,
		P999Ms:     s.P999Ms,
		MaxMs:      s.MaxMs,
		Truncated:  len(all) < w.Total,
	}
}
