package raftnode

import (
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

// healthyWindows feeds n windows whose worst lateness is well under the
// healthy threshold and returns the last multiplier.
func healthyWindows(h *localHealth, n int) int {
	m := 0
	for range n {
		m = h.window(5 * ms)
	}
	return m
}

func TestHealthMultiplierRisesAtOnceToWhatTheLatenessCallsFor(t *testing.T) {
	p := newHealthPolicy(500*ms, 4)
	for _, c := range []struct {
		worst time.Duration
		want  int
	}{
		{0, 1},
		{99 * ms, 1},   // under the starved threshold (base/5)
		{100 * ms, 2},  // starved: 1 + ceil(2*100/500)
		{300 * ms, 3},  // 1 + ceil(600/500)
		{500 * ms, 3},  // 1 + 2
		{600 * ms, 4},  // 1 + ceil(1200/500)
		{5000 * ms, 4}, // bounded by max
	} {
		h := newLocalHealth(p)
		if got := h.window(c.worst); got != c.want {
			t.Errorf("first window with worst lateness %v: multiplier %d, want %d", c.worst, got, c.want)
		}
	}
}

func TestHealthMultiplierStepsUpOnRepeatedStarvationAndStopsAtMax(t *testing.T) {
	h := newLocalHealth(newHealthPolicy(500*ms, 4))
	var got []int
	for range 5 {
		got = append(got, h.window(100*ms))
	}
	want := []int{2, 3, 4, 4, 4}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("multipliers over 5 starved windows %v, want %v", got, want)
		}
	}
}

func TestHealthMultiplierFallsOneStepPerRecoverHealthyWindows(t *testing.T) {
	h := newLocalHealth(newHealthPolicy(500*ms, 4))
	h.window(time.Second)
	if h.mult != 4 {
		t.Fatalf("multiplier %d after a 1s-late window, want 4", h.mult)
	}
	if m := healthyWindows(h, healthRecover-1); m != 4 {
		t.Fatalf("multiplier %d after %d healthy windows, want still 4 (hysteresis)", m, healthRecover-1)
	}
	if m := healthyWindows(h, 1); m != 3 {
		t.Fatalf("multiplier %d after %d healthy windows, want 3", m, healthRecover)
	}
	if m := healthyWindows(h, 2*healthRecover); m != 1 {
		t.Fatalf("multiplier %d after %d more healthy windows, want 1", m, 2*healthRecover)
	}
	if m := healthyWindows(h, 3*healthRecover); m != 1 {
		t.Fatalf("multiplier %d: must not fall below 1", m)
	}
}

// A window between the healthy and starved thresholds neither raises the
// multiplier nor counts towards lowering it: a server hovering near the
// threshold does not flap.
func TestHealthBorderlineWindowResetsTheRecovery(t *testing.T) {
	h := newLocalHealth(newHealthPolicy(500*ms, 4))
	h.window(100 * ms) // 2
	for range 3 {
		healthyWindows(h, healthRecover-1)
		if m := h.window(70 * ms); m != 2 {
			t.Fatalf("borderline window: multiplier %d, want 2", m)
		}
	}
	if m := healthyWindows(h, healthRecover); m != 1 {
		t.Fatalf("multiplier %d after %d healthy windows in a row, want 1", m, healthRecover)
	}
	// Starved again: back up at once.
	if m := h.window(250 * ms); m != 2 {
		t.Fatalf("multiplier %d after a 250ms-late window, want 2", m)
	}
}

func TestHealthMultiplierOffAtMaxOne(t *testing.T) {
	h := newLocalHealth(newHealthPolicy(500*ms, 1))
	if m := h.window(10 * time.Second); m != 1 {
		t.Fatalf("max 1: multiplier %d, want 1", m)
	}
}

func TestLatenessWindowReportsTheWorstTickOfEachWindow(t *testing.T) {
	w := latenessWindow{tick: healthTick}
	start := time.Unix(1000, 0)
	now := start
	var worst time.Duration
	var done bool
	gaps := []time.Duration{0, 100 * ms, 100 * ms, 450 * ms, 100 * ms, 130 * ms, 100 * ms, 100 * ms, 100 * ms, 100 * ms}
	for i, g := range gaps {
		now = now.Add(g)
		worst, done = w.observe(now)
		if done != (i == len(gaps)-1) {
			t.Fatalf("tick %d: window done %v", i, done)
		}
	}
	if worst != 350*ms {
		t.Fatalf("worst lateness %v, want 350ms (a 450ms gap against a 100ms tick)", worst)
	}
	// The next window starts afresh: on-time ticks report no lateness.
	for i := range healthWindow {
		now = now.Add(healthTick)
		worst, done = w.observe(now)
		if done != (i == healthWindow-1) {
			t.Fatalf("second window tick %d: done %v", i, done)
		}
	}
	if worst != 0 {
		t.Fatalf("on-time window: worst lateness %v, want 0", worst)
	}
}

// applyTimeouts scales a follower's heartbeat and election timeouts by the
// multiplier and keeps a leader's at the configured ones (its lease cannot
// be reloaded, and its heartbeat cadence follows HeartbeatTimeout).
func TestApplyTimeoutsScalesAFollowerOnly(t *testing.T) {
	tune := func(c *Config) { c.MaxTimeoutMultiplier = 1 } // no sampler: the test sets the multiplier
	lead := fastConfig(t, "lead", t.TempDir())
	lead.Bootstrap = true
	tune(&lead)
	leader := mustNew(t, lead, newKV())
	t.Cleanup(func() { _ = leader.Shutdown() })
	waitLeader(t, leader)
	fol := fastConfig(t, "follower", t.TempDir())
	tune(&fol)
	follower := mustNew(t, fol, newKV()) // never bootstrapped or added: stays a follower
	t.Cleanup(func() { _ = follower.Shutdown() })

	for _, n := range []*Node{leader, follower} {
		n.multiplier.v.Store(3)
		n.applyTimeouts()
		if got := n.Stats()["timeout_multiplier"]; got != "3" {
			t.Errorf("%s: Stats timeout_multiplier %q, want 3", n.ID(), got)
		}
	}
	if rc := follower.raft.ReloadableConfig(); rc.HeartbeatTimeout != 3*fol.HeartbeatTimeout || rc.ElectionTimeout != 3*fol.ElectionTimeout {
		t.Errorf("follower at 3x: heartbeat %v election %v, want %v and %v", rc.HeartbeatTimeout, rc.ElectionTimeout, 3*fol.HeartbeatTimeout, 3*fol.ElectionTimeout)
	}
	if rc := leader.raft.ReloadableConfig(); rc.HeartbeatTimeout != lead.HeartbeatTimeout || rc.ElectionTimeout != lead.ElectionTimeout {
		t.Errorf("leader at 3x: heartbeat %v election %v, want the configured %v and %v", rc.HeartbeatTimeout, rc.ElectionTimeout, lead.HeartbeatTimeout, lead.ElectionTimeout)
	}
	follower.multiplier.v.Store(1)
	follower.applyTimeouts()
	if rc := follower.raft.ReloadableConfig(); rc.HeartbeatTimeout != fol.HeartbeatTimeout {
		t.Errorf("follower back at 1x: heartbeat %v, want %v", rc.HeartbeatTimeout, fol.HeartbeatTimeout)
	}
}

func TestConfigRejectsAnOutOfRangeTimeoutMultiplier(t *testing.T) {
	for _, m := range []int{0, -1, 11} {
		c := fastConfig(t, "n", t.TempDir())
		c.MaxTimeoutMultiplier = m
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "MaxTimeoutMultiplier") {
			t.Errorf("MaxTimeoutMultiplier %d: error %v, want one naming MaxTimeoutMultiplier", m, err)
		}
	}
}
