package nodelifecycle

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// conds builds Ready conditions: T ready, F not ready, U unknown, - missing.
func conds(s string) []*corev1.NodeCondition {
	var out []*corev1.NodeCondition
	for _, r := range s {
		switch r {
		case 'T':
			out = append(out, &corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue})
		case 'F':
			out = append(out, &corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse})
		case 'U':
			out = append(out, &corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown})
		case '-':
			out = append(out, nil)
		}
	}
	return out
}

func TestComputeZoneState(t *testing.T) {
	tests := []struct {
		nodes        string
		wantNotReady int
		want         zoneState
	}{
		{"TTTT", 0, stateNormal},
		{"U", 1, stateFullDisruption},
		{"UF-", 3, stateFullDisruption},
		{"TU", 1, stateNormal},
		{"TUU", 2, stateNormal},              // two not ready never disrupt a zone
		{"TUUU", 3, statePartialDisruption},  // 3/4 >= 0.55
		{"TTUUU", 3, statePartialDisruption}, // 3/5 = 0.6
		{"TTTUUU", 3, stateNormal},           // 3/6 = 0.5 < 0.55
		{"TTTTTTTTTUUUUUUUUUUU", 11, statePartialDisruption},
		{"", 0, stateNormal},
	}
	for _, tc := range tests {
		notReady, st := computeZoneState(conds(tc.nodes), 0.55)
		if notReady != tc.wantNotReady || st != tc.want {
			t.Errorf("%q: got %d not ready, %s; want %d, %s", tc.nodes, notReady, st, tc.wantNotReady, tc.want)
		}
	}
}

func TestRateFor(t *testing.T) {
	cfg := DefaultConfig()
	tests := []struct {
		state zoneState
		size  int
		want  float64
	}{
		{stateNormal, 10, 0.1},
		{stateFullDisruption, 10, 0.1},     // one dead zone among live ones is evacuated
		{statePartialDisruption, 50, 0},    // small cluster: stop
		{statePartialDisruption, 51, 0.01}, // large cluster: slow down
	}
	for _, tc := range tests {
		if got := cfg.rateFor(tc.state, tc.size); got != tc.want {
			t.Errorf("rateFor(%s, %d) = %g, want %g", tc.state, tc.size, got, tc.want)
		}
	}
}

func rates(m map[string]float64) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, fmt.Sprintf("%s=%g", k, m[k]))
	}
	return strings.Join(out, " ")
}

// TestDisruptionTransitions walks the zones of a cluster through the
// upstream state machine, pass by pass.
func TestDisruptionTransitions(t *testing.T) {
	d := &disruption{cfg: DefaultConfig(), states: map[string]zoneState{}}
	big := strings.Repeat("T", 40) + strings.Repeat("U", 20) // 60 nodes, a third down
	bigDown := strings.Repeat("T", 20) + strings.Repeat("U", 40)
	steps := []struct {
		name      string
		zones     map[string]string
		wantRates string
		entered   bool
		exited    bool
		allFull   bool
	}{
		{name: "first pass: every zone leaves Initial",
			zones: map[string]string{"a": "TTT", "b": "TTT"}, wantRates: "a=0.1 b=0.1"},
		{name: "steady: nothing changes",
			zones: map[string]string{"a": "TTT", "b": "TUT"}},
		{name: "zone b fully down while a lives: b is evacuated at the normal rate",
			zones: map[string]string{"a": "TTT", "b": "UUU"}, wantRates: "b=0.1"},
		{name: "every zone down: stop, take the taints off",
			zones: map[string]string{"a": "UUU", "b": "UUU"}, wantRates: "a=0 b=0", entered: true, allFull: true},
		{name: "still all down: nothing more",
			zones: map[string]string{"a": "UUU", "b": "UUU"}, allFull: true},
		{name: "a node is back: leave full disruption, restart every clock",
			zones: map[string]string{"a": "TUU", "b": "UUU"}, wantRates: "a=0.1 b=0.1", exited: true},
		{name: "a small zone partially disrupted stops evicting",
			zones: map[string]string{"a": "TUUU", "b": "UUU"}, wantRates: "a=0"},
		{name: "zone a grows, still partially disrupted: its rate is set on state changes only, as upstream",
			zones: map[string]string{"a": bigDown, "b": "TTT"}, wantRates: "b=0.1"},
		{name: "zone a recovers",
			zones: map[string]string{"a": big, "b": "TTT"}, wantRates: "a=0.1"},
		{name: "a large zone partially disrupted slows down",
			zones: map[string]string{"a": bigDown, "b": "TTT"}, wantRates: "a=0.01"},
		{name: "a zone that recovers returns to the normal rate",
			zones: map[string]string{"a": big, "b": "TTT"}, wantRates: "a=0.1"},
		{name: "a zone that disappears is forgotten, a new one starts Initial",
			zones: map[string]string{"c": "TTT"}, wantRates: "c=0.1"},
	}
	for _, s := range steps {
		zones := map[string][]*corev1.NodeCondition{}
		for z, n := range s.zones {
			zones[z] = conds(n)
		}
		ch := d.update(zones)
		if got := rates(ch.rates); got != s.wantRates || ch.enteredFull != s.entered || ch.exitedFull != s.exited {
			t.Fatalf("%s: rates %q entered %v exited %v; want %q %v %v", s.name, got, ch.enteredFull, ch.exitedFull, s.wantRates, s.entered, s.exited)
		}
		if d.allFull() != s.allFull {
			t.Fatalf("%s: allFull = %v", s.name, d.allFull())
		}
	}
}

// TestStartFullyDisrupted: a controller that starts (a new leader) while no
// node is ready stops evictions at once.
func TestStartFullyDisrupted(t *testing.T) {
	d := &disruption{cfg: DefaultConfig(), states: map[string]zoneState{}}
	ch := d.update(map[string][]*corev1.NodeCondition{"a": conds("UU"), "b": conds("U")})
	if !ch.enteredFull || rates(ch.rates) != "a=0 b=0" || !d.allFull() {
		t.Fatalf("start with every node down: %+v", ch)
	}
}
