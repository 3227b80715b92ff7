package host

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// slowSpec is a plugin that reports ready only after a while.
func slowSpec(name string) Spec {
	cfg, _ := json.Marshal(map[string]string{"mode": "slow", "after": "300ms"})
	return Spec{Name: name, Path: testPlugin, Args: []string{"manual"}, Builtin: true, Config: cfg}
}

// With StartConcurrency 2, no more than 2 of 6 plugins are between launch
// (a PID) and ready at any time, and all 6 end up running.
func TestStartConcurrencyBoundsPluginsStartingAtOnce(t *testing.T) {
	cfg := testConfig(&syncBuffer{})
	cfg.StartConcurrency = 2
	cfg.StartHold = time.Minute // only ready or the end of a run gives a turn back here
	var mu sync.Mutex
	starting := map[string]bool{}
	most := 0
	cfg.OnChange = func(st PluginStatus) {
		mu.Lock()
		defer mu.Unlock()
		starting[st.Name] = st.PID != 0 && st.State == StateStarting
		n := 0
		for _, s := range starting {
			if s {
				n++
			}
		}
		most = max(most, n)
	}
	var specs []Spec
	for i := range 6 {
		specs = append(specs, slowSpec(fmt.Sprintf("p%d", i)))
	}
	s := startSupervisor(t, cfg, specs...)
	for _, sp := range specs {
		waitFor(t, s, sp.Name, func(st PluginStatus) bool { return st.State == StateRunning && st.Ready })
	}
	mu.Lock()
	defer mu.Unlock()
	if most > 2 || most == 0 {
		t.Fatalf("at most %d plugins were launched and not yet ready at once, want 1 or 2", most)
	}
}

// Stopping while plugins hold turns or wait for one gives every turn back.
func TestStopGivesBackEveryStartTurn(t *testing.T) {
	cfg := testConfig(&syncBuffer{})
	cfg.StartConcurrency = 1
	cfg.StartHold = time.Minute
	never, _ := json.Marshal(map[string]string{"mode": "never"})
	specs := []Spec{
		{Name: "never", Path: testPlugin, Args: []string{"manual"}, Builtin: true, Config: never},
		{Name: "never2", Path: testPlugin, Args: []string{"manual"}, Builtin: true, Config: never},
		slowSpec("slow"),
	}
	s := startSupervisor(t, cfg, specs...)
	// One of them launches and holds the only turn; the others wait.
	waitLaunched(t, s)
	s.Stop()
	if n := len(s.gate.slots); n != 0 {
		t.Fatalf("%d start turns still taken after Stop", n)
	}
	// The next term launches again from a free gate.
	if err := s.Start(context.Background(), 8); err != nil {
		t.Fatal(err)
	}
	waitLaunched(t, s)
}

// waitLaunched waits until some plugin has a process. The deadline is a
// hang guard.
func waitLaunched(t *testing.T, s *Supervisor) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, st := range s.Status() {
			if st.PID != 0 {
				return
			}
		}
	}
	t.Fatalf("no plugin launched: %+v", s.Status())
}

func TestStartTurnIsGivenBackAfterTheHold(t *testing.T) {
	clock := clockwork.NewFakeClock()
	g := newStartGate(1, clock, 10*time.Second)
	ctx := context.Background()
	first, err := g.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *startTurn)
	go func() {
		second, _ := g.acquire(ctx)
		got <- second
	}()
	if err := clock.BlockUntilContext(ctx, 1); err != nil { // the first turn's hold timer
		t.Fatal(err)
	}
	select {
	case <-got:
		t.Fatal("a second turn was given while the first was held")
	default:
	}
	clock.Advance(10 * time.Second)
	second := <-got
	first.release() // late: must not free the second's slot
	first.release()
	if n := len(g.slots); n != 1 {
		t.Fatalf("%d turns taken, want 1 (the second's)", n)
	}
	second.release()
	if n := len(g.slots); n != 0 {
		t.Fatalf("%d turns taken after release, want 0", n)
	}
	// Waiting for a turn ends with the context, taking none.
	if _, err := g.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.acquire(cctx); err == nil {
		t.Fatal("acquire on a full gate with a cancelled context succeeded")
	}
	if n := len(g.slots); n != 1 {
		t.Fatalf("%d turns taken after a cancelled acquire, want 1", n)
	}
}
