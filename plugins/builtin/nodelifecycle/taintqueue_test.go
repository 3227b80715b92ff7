package nodelifecycle

import (
	"errors"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// drain runs tainting passes every 100ms from start for d (as the
// controller does) and returns when each node was tainted, relative to
// start.
func drain(tn *tainter, start time.Time, d time.Duration, needs func(string) bool) map[string]time.Duration {
	tainted := map[string]time.Duration{}
	for at := start; !at.After(start.Add(d)); at = at.Add(taintingPeriod) {
		tn.pass(at, needs, func(node string) error {
			tainted[node] = at.Sub(start)
			return nil
		})
	}
	return tainted
}

func always(string) bool { return true }

// TestTaintingRate: at 0.1 nodes/s the first node of a zone goes at once,
// the next ones ten seconds apart; zones do not share their budget.
func TestTaintingRate(t *testing.T) {
	tn := newTainter(0.1)
	for _, n := range []string{"a1", "a2", "a3"} {
		tn.add("a", n)
	}
	tn.add("b", "b1")
	tn.add("a", "a1") // already queued: no second entry
	got := drain(tn, t0, 25*time.Second, always)
	want := map[string]time.Duration{"a1": 0, "a2": 10 * time.Second, "a3": 20 * time.Second, "b1": 0}
	for n, w := range want {
		if at, ok := got[n]; !ok || at != w {
			t.Errorf("%s tainted at %v (tainted: %v), want %v", n, at, ok, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("tainted %v, want exactly %v", got, want)
	}
}

func TestTaintingStopsAtRateZero(t *testing.T) {
	tn := newTainter(0.1)
	tn.add("a", "a1")
	tn.setRate("a", 0, t0)
	if got := drain(tn, t0, time.Minute, always); len(got) != 0 {
		t.Fatalf("tainted %v at rate 0", got)
	}
	// Back to a rate: the zone starts without a token, as upstream's swap.
	tn.setRate("a", 0.5, t0.Add(time.Minute))
	got := drain(tn, t0.Add(time.Minute), 5*time.Second, always)
	if got["a1"] != 2*time.Second {
		t.Errorf("after resuming at 0.5/s a1 was tainted at %v, want 2s", got["a1"])
	}
}

func TestTaintingSkipsNodesNoLongerNeeding(t *testing.T) {
	tn := newTainter(0.1)
	tn.add("a", "recovered")
	tn.add("a", "down")
	got := drain(tn, t0, time.Second, func(n string) bool { return n == "down" })
	if _, ok := got["recovered"]; ok || got["down"] != 0 {
		t.Errorf("tainted %v; a node that recovered must leave the queue without using the zone's token", got)
	}
	if q := tn.queued("a"); len(q) != 0 {
		t.Errorf("queue after the pass: %v", q)
	}
}

func TestTaintingRetriesAFailure(t *testing.T) {
	tn := newTainter(1)
	tn.add("a", "n1")
	tn.add("a", "n2")
	fail := true
	var order []string
	for at := t0; !at.After(t0.Add(3 * time.Second)); at = at.Add(taintingPeriod) {
		tn.pass(at, always, func(n string) error {
			if fail {
				fail = false
				return errors.New("conflict")
			}
			order = append(order, n)
			return nil
		})
	}
	if !slices.Equal(order, []string{"n1", "n2"}) {
		t.Errorf("tainted in order %v; a failed node stays first in line", order)
	}
}

func TestRemoveFromQueue(t *testing.T) {
	tn := newTainter(0.1)
	tn.add("a", "n1")
	tn.add("a", "n2")
	if !tn.remove("a", "n1") || tn.remove("a", "n1") || tn.remove("b", "n1") {
		t.Error("remove reports wrongly")
	}
	if q := tn.queued("a"); !slices.Equal(q, []string{"n2"}) {
		t.Errorf("queue %v", q)
	}
}
