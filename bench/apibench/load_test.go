package main

import (
	"slices"
	"testing"

	"github.com/keelson/keelson/bench/internal/configmapload"
	"github.com/keelson/keelson/bench/internal/procstat"
)

func TestMedianReport(t *testing.T) {
	side := func(rate, p99 float64, rss int64) sideReport {
		return sideReport{Label: "x", ReadySec: rate / 100, Stages: []stage{{Name: "a", Seconds: rate / 100}},
			Create: configmapload.Result{CreatesPerSec: rate, P99Ms: p99},
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
