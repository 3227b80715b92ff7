package ha

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Scenario is a workload run across a sequence of faults, then checked.
type Scenario struct {
	Faults   []Fault
	Warmup   time.Duration // workload before the first fault (default 2s)
	Hold     time.Duration // how long each fault lasts (default 5s)
	Cooldown time.Duration // workload after the last recovery (default 2s)
	CAS      CASConfig
	// CheckTimeout bounds the linearizability check (default 2m); running
	// out of time is reported, not failed.
	CheckTimeout time.Duration
}

// Run runs the scenario on c and checks everything this package knows how
// to check. It logs one summary line per fault and one verdict line.
func (sc Scenario) Run(t testing.TB, c *Cluster) {
	t.Helper()
	if sc.Warmup == 0 {
		sc.Warmup = 2 * time.Second
	}
	if sc.Hold == 0 {
		sc.Hold = 5 * time.Second
	}
	if sc.Cooldown == 0 {
		sc.Cooldown = 2 * time.Second
	}
	if sc.CheckTimeout == 0 {
		sc.CheckTimeout = 2 * time.Minute
	}
	sc.CAS.defaults()

	from := InitKeys(t, c, sc.CAS) + 1
	ws := StartWatchers(c, sc.CAS.Prefix, from)
	w := StartCAS(t, c, sc.CAS)
	time.Sleep(sc.Warmup)

	var injected []string
	for _, f := range sc.Faults {
		injected = append(injected, sc.inject(t, c, f))
	}

	time.Sleep(sc.Cooldown)
	h := w.Stop()
	sentinel := Sentinel(t, c, sc.CAS.Prefix)
	rep := CheckWatchesAndHistory(t, c, ws, h, sentinel)
	verdict := CheckLinearizable(t, RegisterModel(InitialValue), h.Ops, sc.CheckTimeout)
	c.CheckHashes(t, time.Minute)

	t.Logf("SCENARIO %s: %s\n  faults: %s\n  operations: %s\n  watch: %d events, %d re-watches after errors\n  linearizability: %s",
		t.Name(), passFail(t), strings.Join(injected, "; "), h.Summary(), rep.Events, rep.Restarts, verdict)
}

// inject applies one fault for Hold, heals it and waits for recovery,
// returning a description with what was measured (never asserted).
func (sc Scenario) inject(t testing.TB, c *Cluster, f Fault) string {
	t.Helper()
	old, oldTerm := c.WaitLeader(t, time.Minute, nil)
	start := time.Now()
	desc := f.Inject(t, c)
	t.Logf("fault %s: %s (leader was %s, term %d)", f.Name(), desc, old.Name, oldTerm)
	if f.DeposesLeader() {
		nl, term := c.WaitLeader(t, 2*time.Minute, func(s *Server, _ uint64) bool { return s != old })
		desc += fmt.Sprintf(", new leader %s term %d after %s", nl.Name, term, time.Since(start).Round(time.Millisecond))
	}
	if rest := sc.Hold - time.Since(start); rest > 0 {
		time.Sleep(rest)
	}
	healed := time.Now()
	f.Heal(t, c)
	l, term := c.WaitLeader(t, 2*time.Minute, nil)
	c.WaitWritable(t, 2*time.Minute)
	desc += fmt.Sprintf(", healed: leader %s term %d, writes through every server after %s", l.Name, term, time.Since(healed).Round(time.Millisecond))
	t.Logf("fault %s: %s", f.Name(), desc)
	return desc
}

func passFail(t testing.TB) string {
	if t.Failed() {
		return "FAIL"
	}
	return "PASS"
}
