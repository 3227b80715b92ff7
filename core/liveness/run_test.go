package liveness

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keelson/keelson/internal/nodehealth"
	"github.com/keelson/keelson/internal/serfpool"
)

// fakePool is a pool whose members, probes and cross-check answers the test
// sets.
type fakePool struct {
	mu        sync.Mutex
	members   map[string]serfpool.Member
	reachable map[string]bool               // direct probes from this server
	opinions  map[string][]serfpool.Opinion // the other servers' answers
	asked     int                           // other servers asked; 0: a lone server
	changed   chan struct{}
	crossed   int // cross-check calls
}

func newFakePool() *fakePool {
	return &fakePool{members: map[string]serfpool.Member{}, reachable: map[string]bool{},
		opinions: map[string][]serfpool.Opinion{}, changed: make(chan struct{})}
}

func (p *fakePool) Members() []serfpool.Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []serfpool.Member
	for _, m := range p.members {
		out = append(out, m)
	}
	return out
}

func (p *fakePool) Changes() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

func (p *fakePool) Probe(_ context.Context, names ...string) map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]bool{}
	for _, n := range names {
		out[n] = p.reachable[n]
	}
	return out
}

func (p *fakePool) CrossCheck(_ context.Context, names []string) (map[string][]serfpool.Opinion, int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.crossed++
	out := map[string][]serfpool.Opinion{}
	for _, n := range names {
		out[n] = p.opinions[n]
	}
	return out, p.asked, nil
}

// set changes a member and wakes the runner, as a serf event does.
func (p *fakePool) set(m serfpool.Member) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.members[m.Name] = m
	close(p.changed)
	p.changed = make(chan struct{})
}

func readyNode(name string, gossip bool) *corev1.Node {
	n := node(name, gossip, corev1.ConditionTrue, "KubeletReady")
	n.CreationTimestamp = metav1.Time{}
	return n
}

func readyOf(t *testing.T, cs *fake.Clientset, name string) corev1.NodeCondition {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := nodehealth.Condition(n, corev1.NodeReady)
	if c == nil {
		return corev1.NodeCondition{}
	}
	return *c
}

// writes counts the writes made to Nodes.
func writes(cs *fake.Clientset) int {
	n := 0
	for _, a := range cs.Actions() {
		if a.GetResource().Resource == "nodes" && (a.GetVerb() == "update" || a.GetVerb() == "patch") {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type harness struct {
	t     *testing.T
	cs    *fake.Clientset
	pool  *fakePool
	clock *clockwork.FakeClock
	stop  func()

	mu        sync.Mutex
	lastRound time.Time // the clock time of the latest finished round
}

func start(t *testing.T, nodes ...*corev1.Node) *harness {
	t.Helper()
	h := &harness{t: t, cs: fake.NewClientset(), pool: newFakePool(), clock: clockwork.NewFakeClockAt(t0)}
	for _, n := range nodes {
		if _, err := h.cs.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{GracePeriod: grace, Interval: time.Second, Clock: h.clock, Logger: slog.New(slog.DiscardHandler),
			afterRound: func(at time.Time) { h.mu.Lock(); h.lastRound = at; h.mu.Unlock() }}, h.pool, h.cs)
	}()
	h.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	}
	t.Cleanup(h.stop)
	// Run is looping once its ticker exists.
	if err := h.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return h
}

// tick advances the fake clock by d, one second (the interval) at a time,
// each time waiting for the round the ticker starts.
func (h *harness) tick(d time.Duration) {
	h.t.Helper()
	for step := time.Duration(0); step < d; step += time.Second {
		h.clock.Advance(time.Second)
		at := h.clock.Now()
		waitFor(h.t, "a round at "+at.Format(time.TimeOnly), func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return !h.lastRound.Before(at)
		})
	}
}

func TestRunWritesOnlyOnTransitions(t *testing.T) {
	h := start(t, readyNode("n1", false), readyNode("n2", false))
	h.pool.set(member("n1", serfpool.StatusAlive, time.Hour))
	h.pool.set(member("n2", serfpool.StatusAlive, time.Hour))
	waitFor(t, "both nodes gossip-managed", func() bool {
		for _, name := range []string{"n1", "n2"} {
			n, _ := h.cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
			if n.Annotations[nodehealth.LivenessAnnotation] != nodehealth.LivenessGossip {
				return false
			}
		}
		return true
	})
	h.tick(3 * time.Second) // let the cache catch up with the annotations
	base := writes(h.cs)
	h.tick(2 * grace)
	if got := writes(h.cs) - base; got != 0 {
		t.Fatalf("%d node writes in %s of steady state, want 0", got, 2*grace)
	}

	// n1 fails: nothing until the grace period has passed.
	h.pool.mu.Lock()
	h.pool.asked = 2
	h.pool.opinions["n1"] = []serfpool.Opinion{{Server: "s2", Status: serfpool.StatusFailed}, {Server: "s3", Status: serfpool.StatusFailed}}
	h.pool.mu.Unlock()
	h.pool.set(serfpool.Member{Name: "n1", Role: serfpool.RoleAgent, Status: serfpool.StatusFailed, Since: h.clock.Now()})
	h.tick(grace - 2*time.Second)
	if c := readyOf(t, h.cs, "n1"); c.Status != corev1.ConditionTrue {
		t.Fatalf("n1 Ready = %s before the grace period ended", c.Status)
	}
	h.tick(3 * time.Second)
	waitFor(t, "n1 Ready=Unknown", func() bool { return readyOf(t, h.cs, "n1").Status == corev1.ConditionUnknown })
	if c := readyOf(t, h.cs, "n1"); c.Reason != nodehealth.ReasonUnknown || c.Message != nodehealth.MessageUnknown {
		t.Errorf("n1 Ready = %+v, want upstream's reason and message", c)
	}
	if c := readyOf(t, h.cs, "n2"); c.Status != corev1.ConditionTrue {
		t.Errorf("n2 Ready = %s; only n1 failed", c.Status)
	}
	base = writes(h.cs)
	h.tick(grace)
	if got := writes(h.cs) - base; got != 0 {
		t.Errorf("%d more writes while n1 stays down, want 0", got)
	}

	// n1 is back: Ready again, at once.
	h.pool.set(member("n1", serfpool.StatusAlive, 0))
	waitFor(t, "n1 Ready=True", func() bool { return readyOf(t, h.cs, "n1").Status == corev1.ConditionTrue })
}

func TestRunHoldsWhenAnotherServerReachesTheNode(t *testing.T) {
	h := start(t, readyNode("n1", true), readyNode("n2", true), readyNode("n3", true))
	h.pool.mu.Lock()
	h.pool.asked = 2
	h.pool.opinions["n1"] = []serfpool.Opinion{{Server: "s2", Status: serfpool.StatusFailed}, {Server: "s3", Status: serfpool.StatusAlive, Reachable: true}}
	h.pool.opinions["n2"] = []serfpool.Opinion{{Server: "s2", Status: serfpool.StatusFailed}, {Server: "s3", Status: serfpool.StatusFailed}}
	h.pool.reachable["n3"] = true // this server's own direct probe gets an answer
	h.pool.mu.Unlock()
	for _, n := range []string{"n1", "n2", "n3"} {
		h.pool.set(serfpool.Member{Name: n, Status: serfpool.StatusFailed, Since: h.clock.Now()})
	}
	h.tick(grace + 2*time.Second)
	waitFor(t, "n2 Ready=Unknown", func() bool { return readyOf(t, h.cs, "n2").Status == corev1.ConditionUnknown })
	h.tick(5 * time.Second)
	for _, n := range []string{"n1", "n3"} {
		if c := readyOf(t, h.cs, n); c.Status != corev1.ConditionTrue {
			t.Errorf("%s Ready = %s although a server still reaches it", n, c.Status)
		}
	}

	// Silence from the other servers is not agreement either.
	h.pool.mu.Lock()
	h.pool.opinions["n1"] = nil
	h.pool.mu.Unlock()
	h.tick(5 * time.Second)
	if c := readyOf(t, h.cs, "n1"); c.Status != corev1.ConditionTrue {
		t.Errorf("n1 Ready = %s although no other server answered", c.Status)
	}
	// A lone server has nobody to ask.
	h.pool.mu.Lock()
	h.pool.asked = 0
	h.pool.mu.Unlock()
	h.tick(2 * time.Second)
	waitFor(t, "n1 Ready=Unknown on a lone server", func() bool { return readyOf(t, h.cs, "n1").Status == corev1.ConditionUnknown })
}

// TestRunNewLeaderWaits: a server that just became leader sees members that
// failed long ago, yet marks nothing before it has led a grace period.
func TestRunNewLeaderWaits(t *testing.T) {
	h := start(t, readyNode("n1", true))
	h.pool.set(serfpool.Member{Name: "n1", Status: serfpool.StatusFailed, Since: t0.Add(-time.Hour)})
	h.tick(grace - 2*time.Second)
	if c := readyOf(t, h.cs, "n1"); c.Status != corev1.ConditionTrue {
		t.Fatalf("n1 Ready = %s within the new leader's first grace period", c.Status)
	}
	h.tick(3 * time.Second)
	waitFor(t, "n1 Ready=Unknown", func() bool { return readyOf(t, h.cs, "n1").Status == corev1.ConditionUnknown })
}
