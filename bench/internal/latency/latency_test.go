package latency

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"single", []time.Duration{7}, 0.99, 7},
		{"median of 100", hundred, 0.50, 50 * time.Millisecond},
		{"p99 of 100", hundred, 0.99, 99 * time.Millisecond},
		{"p99.9 of 100 is the max", hundred, 0.999, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.q); got != tt.want {
				t.Errorf("Percentile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		lat  []time.Duration
		want Summary
	}{
		{"none", nil, Summary{}},
		{"unsorted input", []time.Duration{3 * time.Millisecond, time.Millisecond, 5 * time.Millisecond, 2 * time.Millisecond},
			Summary{P50Ms: 2, P99Ms: 5, P999Ms: 5, MaxMs: 5}},
		{"sub-millisecond", []time.Duration{500 * time.Microsecond}, Summary{P50Ms: 0.5, P99Ms: 0.5, P999Ms: 0.5, MaxMs: 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Summarize(tt.lat); got != tt.want {
				t.Errorf("Summarize(%v) = %+v, want %+v", tt.lat, got, tt.want)
			}
		})
	}
}

func TestRate(t *testing.T) {
	tests := []struct {
		n       int
		elapsed time.Duration
		want    float64
	}{
		{4, 2 * time.Second, 2},
		{3, 0, 0},
		{0, time.Second, 0},
	}
	for _, tt := range tests {
		if got := Rate(tt.n, tt.elapsed); got != tt.want {
			t.Errorf("Rate(%d, %v) = %v, want %v", tt.n, tt.elapsed, got, tt.want)
		}
	}
}
