package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/bench/internal/procstat"
)

func TestSummarize(t *testing.T) {
	w := workload{Workers: 2, Total: 4}
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
	data := workload{DataKeys: 10, ValueSize: 32}.configMapData()
	if len(data) != 10 {
		t.Fatalf("configMapData has %d keys, want 10", len(data))
	}
	for k, v := range data {
		if len(v) != 32 || strings.TrimLeft(v, "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Errorf("data[%q] = %q: want 32 printable bytes", k, v)
		}
	}
}

func TestMedianReport(t *testing.T) {
	side := func(rate, p99 float64, rss int64) sideReport {
		return sideReport{Label: "x", ReadySec: rate / 100, Stages: []stage{{Name: "a", Seconds: rate / 100}},
			Create: result{CreatesPerSec: rate, P99Ms: p99},
			Loaded: memorySet{Processes: []procMemory{{Name: "p", PID: 9, Memory: procstat.Memory{VmRSSKiB: rss}}}, VmRSSKiB: rss}}
	}
	tests := []struct {
		name     string
		rounds   []sideReport
		wantRate float64
		wantP99  float64
		wantRSS  int64
	}{
		{"one round is itself", []sideReport{side(500, 9, 100)}, 500, 9, 100},
		{"odd count takes the middle of each figure", []sideReport{side(900, 1, 300), side(500, 9, 100), side(700, 5, 200)}, 700, 5, 200},
		{"even count averages the middle two", []sideReport{side(400, 2, 100), side(600, 4, 300)}, 500, 3, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := medianReport(tt.rounds)
			if m.Create.CreatesPerSec != tt.wantRate || m.Create.P99Ms != tt.wantP99 ||
				m.Loaded.VmRSSKiB != tt.wantRSS || m.Loaded.Processes[0].VmRSSKiB != tt.wantRSS ||
				m.Stages[0].Seconds != tt.wantRate/100 {
				t.Errorf("medianReport = %+v, want %v/s, p99 %v, RSS %v", m, tt.wantRate, tt.wantP99, tt.wantRSS)
			}
		})
	}
}

func TestSideOrderAlternates(t *testing.T) {
	sides := []string{"upstream", "keelson"}
	if got := sideOrder(sides, 0); !slices.Equal(got, sides) {
		t.Errorf("round 0 order = %v, want %v", got, sides)
	}
	if got := sideOrder(sides, 1); !slices.Equal(got, []string{"keelson", "upstream"}) {
		t.Errorf("round 1 order = %v, want reversed", got)
	}
	if !slices.Equal(sides, []string{"upstream", "keelson"}) {
		t.Errorf("sideOrder modified its argument: %v", sides)
	}
}
