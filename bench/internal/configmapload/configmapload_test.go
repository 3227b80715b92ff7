package configmapload

import (
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	w := Workload{Workers: 2, Total: 4}
	tests := []struct {
		name      string
		elapsed   time.Duration
		lat       []time.Duration
		creates   int
		rate      float64
		maxMs     float64
		truncated bool
	}{
		{"all done", 2 * time.Second, []time.Duration{3 * time.Millisecond, time.Millisecond, 5 * time.Millisecond, 2 * time.Millisecond}, 4, 2, 5, false},
		{"time cap", time.Second, []time.Duration{time.Millisecond}, 1, 1, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := summarize(w, tt.elapsed, tt.lat)
			if r.Creates != tt.creates || r.CreatesPerSec != tt.rate || r.MaxMs != tt.maxMs || r.Truncated != tt.truncated {
				t.Errorf("summarize = %+v, want %d creates at %v/s, max %vms, truncated %v",
					r, tt.creates, tt.rate, tt.maxMs, tt.truncated)
			}
		})
	}
}

func TestConfigMapDataSize(t *testing.T) {
	data := Workload{DataKeys: 10, ValueSize: 32}.configMapData()
	if len(data) != 10 {
		t.Fatalf("configMapData has %d keys, want 10", len(data))
	}
	for k, v := range data {
		if len(v) != 32 || strings.TrimLeft(v, "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Errorf("data[%q] = %q: want 32 printable bytes", k, v)
		}
	}
}
