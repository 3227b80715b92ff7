// Package latency summarizes the request latencies a benchmark run measured.
package latency

import (
	"slices"
	"time"
)

// Summary is the distribution of one run's latencies, in milliseconds.
type Summary struct {
	P50Ms  float64
	P99Ms  float64
	P999Ms float64
	MaxMs  float64
}

// Summarize sorts lat in place and returns its percentiles; all are 0 for no
// latencies.
func Summarize(lat []time.Duration) Summary {
	slices.Sort(lat)
	s := Summary{
		P50Ms:  Ms(Percentile(lat, 0.50)),
		P99Ms:  Ms(Percentile(lat, 0.99)),
		P999Ms: Ms(Percentile(lat, 0.999)),
	}
	if len(lat) > 0 {
		s.MaxMs = Ms(lat[len(lat)-1])
	}
	return s
}

// Percentile returns the q-quantile (0 < q <= 1) of sorted by the
// nearest-rank method, or 0 for an empty slice.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted)) + 0.999999999)
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// Rate returns n per second of elapsed, or 0 when no time elapsed.
func Rate(n int, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(n) / elapsed.Seconds()
}

// Ms converts d to (fractional) milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
