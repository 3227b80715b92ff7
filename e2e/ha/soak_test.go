package ha

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// TestSoak runs only with KEELSON_SOAK set to a Go duration (`make soak`):
// on one cluster it runs rounds until the duration has passed, each a fresh
// workload across one fault picked at random, checked like the scenarios.
// KEELSON_SOAK_SEED repeats an earlier run's order of faults.
func TestSoak(t *testing.T) {
	env := os.Getenv("KEELSON_SOAK")
	if env == "" {
		t.Skip("set KEELSON_SOAK to a duration (e.g. 10m) to run the randomized soak")
	}
	d, err := time.ParseDuration(env)
	if err != nil {
		t.Fatalf("KEELSON_SOAK=%q: not a duration: %v", env, err)
	}
	seed := rand.Uint64()
	if s := os.Getenv("KEELSON_SOAK_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("KEELSON_SOAK_SEED=%q: %v", s, err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("soak for %s, KEELSON_SOAK_SEED=%d", d, seed)

	faults := []func() Fault{
		func() Fault { return &KillLeader{} },
		func() Fault { return &KillFollower{} },
		func() Fault { return &PauseLeader{} },
		func() Fault { return &FillLeaderDisk{} },
	}
	if haveIptables() {
		faults = append(faults,
			func() Fault { return &IsolateLeader{} },
			func() Fault { return &IsolateFollower{} },
			func() Fault { return &OneWayLeader{} },
			func() Fault {
				return &DegradeNetwork{Delay: 100 * time.Millisecond, Jitter: 200 * time.Millisecond, Drop: 0.02}
			})
	}
	c := NewCluster(t, Options{DiskSize: "512m", RaftProxy: haveIptables()})
	end := time.Now().Add(d)
	counts := map[string]int{}
	for round := 1; time.Now().Before(end); round++ {
		f := faults[rng.IntN(len(faults))]()
		counts[f.Name()]++
		sc := Scenario{
			Faults:   []Fault{f},
			Warmup:   time.Second,
			Hold:     time.Duration(2+rng.IntN(6)) * time.Second,
			Cooldown: time.Second,
			CAS:      CASConfig{Prefix: fmt.Sprintf("/soak/%d/", round), Seed: rng.Uint64()},
		}
		if !t.Run(fmt.Sprintf("round%d-%s", round, f.Name()), func(t *testing.T) { sc.Run(t, c) }) {
			t.Fatalf("round %d failed; repeat the order with KEELSON_SOAK_SEED=%d", round, seed)
		}
	}
	t.Logf("soak done: faults injected %v", counts)
}
