package scheduler

import (
	"strings"
	"testing"
	"time"
)

func TestParseConfigDefaults(t *testing.T) {
	for _, raw := range []string{"", "null", "{}", "  "} {
		s, err := parseConfig([]byte(raw))
		if err != nil {
			t.Fatalf("config %q: %v", raw, err)
		}
		if s.schedulerName != "default-scheduler" || s.engine.PercentageOfNodesToScore != 0 ||
			s.engine.Weights.TaintToleration != 3 || s.engine.Weights.NodeResourcesFit != 1 ||
			!s.engine.Preemption || !s.engine.SystemDefaultSpreading ||
			s.queue.InitialBackoff != time.Second || s.queue.MaxBackoff != 10*time.Second ||
			s.clientQPS != defaultClientQPS || s.engine.Parallelism < 1 {
			t.Fatalf("config %q: defaults %+v", raw, s)
		}
	}
}

func TestParseConfigSettings(t *testing.T) {
	s, err := parseConfig([]byte(`{"percentageOfNodesToScore": 30, "scores": {"NodeResourcesBalancedAllocation": 0, "PodTopologySpread": 5},
		"defaultTopologySpread": "None", "preemption": {"disabled": true}, "podInitialBackoff": "500ms", "podMaxBackoff": "1m",
		"parallelism": 2, "clientQPS": 100, "clientBurst": 200, "schedulerName": "other"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.engine.PercentageOfNodesToScore != 30 || s.engine.Weights.BalancedAllocation != 0 || s.engine.Weights.PodTopologySpread != 5 ||
		s.engine.Weights.NodeAffinity != 2 || s.engine.SystemDefaultSpreading || s.engine.Preemption ||
		s.queue.InitialBackoff != 500*time.Millisecond || s.queue.MaxBackoff != time.Minute ||
		s.engine.Parallelism != 2 || s.clientQPS != 100 || s.clientBurst != 200 || s.schedulerName != "other" {
		t.Fatalf("settings %+v", s)
	}
}

func TestParseConfigErrorsNameTheField(t *testing.T) {
	tests := []struct{ raw, want string }{
		{`{"percentageOfNodesToScore": 150}`, "percentageOfNodesToScore: must be between 0 (adaptive) and 100, got 150"},
		{`{"scores": {"ImageLocality": 1}}`, "scores.ImageLocality: unknown score; known scores: InterPodAffinity, NodeAffinity"},
		{`{"scores": {"NodeAffinity": -1}}`, "scores.NodeAffinity: weight must be between 0 (off) and 100, got -1"},
		{`{"podInitialBackoff": "soon"}`, `podInitialBackoff: invalid duration "soon"`},
		{`{"podInitialBackoff": "20s"}`, "podMaxBackoff: must be at least podInitialBackoff (20s), got 10s"},
		{`{"defaultTopologySpread": "Zones"}`, `defaultTopologySpread: must be System or None, got "Zones"`},
		{`{"preemption": {"minCandidateNodesPercentage": 0, "minCandidateNodesAbsolute": 0}}`, "preemption: minCandidateNodesPercentage and minCandidateNodesAbsolute cannot both be 0"},
		{`{"parallelism": -1}`, "parallelism: must not be negative"},
		{`{"percentage": 10}`, `unknown field "percentage"`},
		{`{"percentageOfNodesToScore": "ten"}`, "percentageOfNodesToScore"},
	}
	for _, tc := range tests {
		_, err := parseConfig([]byte(tc.raw))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %s: error %v, want it to contain %q", tc.raw, err, tc.want)
		}
	}
}
