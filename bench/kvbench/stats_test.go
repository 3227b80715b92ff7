package main

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	w := workload{Name: "w", Clients: 2, Total: 4}
	pass := func(d time.Duration, lat ...time.Duration) sample {
		return sample{conns: 1, elapsed: d, lat: [][]time.Duration{lat[:1], lat[1:]}}
	}
	tests := []struct {
		name      string
		passes    []sample
		puts      int
		rate      float64
		maxMs     float64
		truncated bool
	}{
		{"one short pass", []sample{pass(time.Second, time.Millisecond, 3*time.Millisecond)}, 2, 2, 3, true},
		{"two passes merge", []sample{
			pass(time.Second, time.Millisecond, 3*time.Millisecond),
			pass(time.Second, 5*time.Millisecond, 2*time.Millisecond)}, 4, 2, 5, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := summarize(w, tt.passes...)
			if r.Puts != tt.puts || r.PutsPerSec != tt.rate || r.MaxMs != tt.maxMs || r.Truncated != tt.truncated {
				t.Errorf("summarize = %+v, want %d puts at %v/s, max %vms, truncated %v",
					r, tt.puts, tt.rate, tt.maxMs, tt.truncated)
			}
		})
	}
}

func TestBenchKeyIsEightDistinctBytes(t *testing.T) {
	seen := map[string]bool{}
	for _, i := range []uint64{0, 1, 1 << 28, 1<<32 - 1} {
		k := benchKey(i)
		if len(k) != keySize || seen[k] {
			t.Errorf("benchKey(%d) = %q: want %d distinct bytes", i, k, keySize)
		}
		seen[k] = true
	}
	if len(benchValue()) != valueSize {
		t.Errorf("benchValue is %d bytes, want %d", len(benchValue()), valueSize)
	}
}
