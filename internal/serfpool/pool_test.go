package serfpool

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestPoolsJoinAndSeeTags(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	joined := map[string]bool{}
	c1 := fastConfig(t, "s1")
	c1.OnEvent = func(e Event) {
		if e.Type == EventJoin {
			mu.Lock()
			joined[e.Member.Name] = true
			mu.Unlock()
		}
	}
	p1 := startPool(t, ctx, c1)

	c2 := fastConfig(t, "s2")
	c2.Join = []string{p1.Addr()}
	p2 := startPool(t, ctx, c2)

	c3 := fastConfig(t, "s3")
	c3.Zone = "zone-b"
	c3.Join = []string{"127.0.0.1:1", p2.Addr()} // a dead address first: one answer is enough
	p3 := startPool(t, ctx, c3)

	a := fastConfig(t, "agent1")
	a.Role, a.RaftAddr, a.APIAddr = RoleAgent, "", "127.0.0.1:10250"
	a.Join = []string{p1.Addr()}
	a.Proof = func(addr string) (string, error) { return "signed:" + addr, nil }
	pa := startPool(t, ctx, a)

	for _, p := range []*Pool{p1, p2, p3} {
		eventually(t, p.cfg.NodeName+" sees all four alive", func() bool {
			ms := p.Members()
			if len(ms) != 4 {
				return false
			}
			for _, m := range ms {
				if m.Status != StatusAlive {
					return false
				}
			}
			return true
		})
	}

	m3, _ := member(p1, "s3")
	want := Member{Name: "s3", Role: RoleServer, SerfAddr: p3.Addr(), GossipAddr: p3.Addr(), APIAddr: "127.0.0.1:6443",
		RaftAddr: "s3:8300", Zone: "zone-b", Status: StatusAlive}
	m3.Since = want.Since
	if m3 != want {
		t.Errorf("s1 sees s3 as %+v, want %+v", m3, want)
	}
	ag, _ := member(p3, "agent1")
	// The proof is made for the address the pool probes, and published.
	if ag.GossipAddr != pa.Addr() || ag.Proof != "signed:"+pa.Addr() {
		t.Errorf("agent1's proof %q at %q, want one signed for %q", ag.Proof, ag.GossipAddr, pa.Addr())
	}
	if ag.Role != RoleAgent || ag.RaftAddr != "" || ag.APIAddr != "127.0.0.1:10250" || ag.IsServer() {
		t.Errorf("s3 sees agent1 as %+v, want an agent with API 127.0.0.1:10250 and no raft address", ag)
	}
	if got := p2.Local(); got.Name != "s2" || got.SerfAddr != p2.Addr() {
		t.Errorf("s2 Local() = %+v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range []string{"s1", "s2", "s3", "agent1"} {
		if !joined[n] {
			t.Errorf("s1 OnEvent got no join event for %s (got %v)", n, joined)
		}
	}
}

func TestWrongTokenCannotJoin(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p1 := startPool(t, ctx, fastConfig(t, "s1"))

	c2 := fastConfig(t, "intruder")
	log, logs := testLogger(t)
	c2.Logger = log
	c2.Token = "another-cluster-token-9876543210"
	p2 := startPool(t, ctx, c2)

	err := p2.Join(p1.Addr())
	if err == nil {
		t.Fatal("join with a different token succeeded")
	}
	if !strings.Contains(err.Error(), "token is probably wrong") {
		t.Errorf("join error %q does not say the token is probably wrong", err)
	}
	if !strings.Contains(logs.String(), "token is probably wrong") {
		t.Errorf("log does not say the token is probably wrong:\n%s", logs.String())
	}
	if _, ok := member(p1, "intruder"); ok {
		t.Errorf("s1 lists the intruder: %s", names(p1.Members()))
	}
	if n := len(p2.Members()); n != 1 {
		t.Errorf("intruder sees %d members (%s), want only itself", n, names(p2.Members()))
	}
}

func TestLeaveVersusFail(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p1 := startPool(t, ctx, fastConfig(t, "s1"))
	var pools []*Pool
	for _, n := range []string{"s2", "s3"} {
		c := fastConfig(t, n)
		c.Join = []string{p1.Addr()}
		pools = append(pools, startPool(t, ctx, c))
	}
	eventually(t, "three alive", func() bool {
		return len(p1.Members()) == 3 && statusOf(p1, "s2") == StatusAlive && statusOf(p1, "s3") == StatusAlive
	})

	leaver, crasher := pools[0], pools[1]
	if err := leaver.Leave(); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := leaver.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	eventually(t, "s1 sees s2 left", func() bool { return statusOf(p1, "s2") == StatusLeft })

	if err := crasher.Shutdown(); err != nil { // no Leave: looks like a crash
		t.Fatalf("Shutdown: %v", err)
	}
	eventually(t, "s1 sees s3 failed", func() bool { return statusOf(p1, "s3") == StatusFailed })
	if got := statusOf(p1, "s2"); got != StatusLeft {
		t.Errorf("s2 status after s3 failed = %q, want left", got)
	}
}

// TestRestartRejoinsFromSnapshot: a member with a data dir that crashed and
// comes back (here on another port, as after an address change) rejoins the
// members it knew without any Join address.
func TestRestartRejoinsFromSnapshot(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p1 := startPool(t, ctx, fastConfig(t, "s1"))

	c2 := fastConfig(t, "s2")
	c2.DataDir = t.TempDir()
	c2.Join = []string{p1.Addr()}
	first, err := Start(ctx, c2)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "s1 sees s2", func() bool { return statusOf(p1, "s2") == StatusAlive })
	if err := first.Shutdown(); err != nil { // crash: no Leave
		t.Fatal(err)
	}
	eventually(t, "s1 sees s2 failed", func() bool { return statusOf(p1, "s2") == StatusFailed })

	c2.Join = nil
	second := startPool(t, ctx, c2)
	if second.Addr() == first.Addr() {
		t.Logf("restarted on the same address %s", second.Addr())
	}
	eventually(t, "s1 sees the restarted s2 alive at its new address", func() bool {
		m, _ := member(p1, "s2")
		return m.Status == StatusAlive && m.SerfAddr == second.Addr()
	})
}

// TestCrossCheck: the other servers probe a member on request and report
// what they see, so the leader can confirm a failure before acting on it.
func TestCrossCheck(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p1 := startPool(t, ctx, fastConfig(t, "s1"))
	for _, n := range []string{"s2", "s3"} {
		c := fastConfig(t, n)
		c.Join = []string{p1.Addr()}
		startPool(t, ctx, c)
	}
	a := fastConfig(t, "agent1")
	a.Role, a.RaftAddr = RoleAgent, ""
	a.Join = []string{p1.Addr()}
	agent := startPool(t, ctx, a)
	eventually(t, "four alive", func() bool {
		return len(p1.Members()) == 4 && statusOf(p1, "agent1") == StatusAlive &&
			statusOf(p1, "s2") == StatusAlive && statusOf(p1, "s3") == StatusAlive
	})

	// A ping may miss its ProbeInterval (100ms here) on a busy machine:
	// retry until the live members answer.
	eventually(t, "a direct probe reaches agent1 and s2", func() bool {
		got := p1.Probe(ctx, "agent1", "s2", "nobody")
		if got["nobody"] || len(got) != 3 {
			t.Fatalf("Probe(agent1, s2, nobody) = %v; an unknown member must count as unreachable", got)
		}
		return got["agent1"] && got["s2"]
	})
	eventually(t, "s2 and s3 both reach agent1", func() bool {
		ops, asked, err := p1.CrossCheck(ctx, []string{"agent1"})
		if err != nil || asked != 2 {
			t.Fatalf("CrossCheck(agent1) asked %d servers, err %v; want s2 and s3", asked, err)
		}
		return opinionsString(ops["agent1"]) == "s2=alive/reachable,s3=alive/reachable"
	})

	if err := agent.Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "s1 sees agent1 failed", func() bool { return statusOf(p1, "agent1") == StatusFailed })
	if got := p1.Probe(ctx, "agent1"); got["agent1"] {
		t.Errorf("Probe(agent1) of a stopped agent = %v; want unreachable", got)
	}
	eventually(t, "s2 and s3 see agent1 failed too", func() bool {
		ops, _, err := p1.CrossCheck(ctx, []string{"agent1"})
		return err == nil && opinionsString(ops["agent1"]) == "s2=failed/unreachable,s3=failed/unreachable"
	})
}

// TestCrossCheckBatches: many members are asked about in queries small
// enough for serf's size limits, and every member gets every answer.
func TestCrossCheckBatches(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p1 := startPool(t, ctx, fastConfig(t, "s1"))
	c := fastConfig(t, "s2")
	c.Join = []string{p1.Addr()}
	startPool(t, ctx, c)
	eventually(t, "s1 sees s2", func() bool { return statusOf(p1, "s2") == StatusAlive })
	var names []string
	for i := range 60 {
		names = append(names, fmt.Sprintf("a-rather-long-node-name-in-zone-b-%03d", i))
	}
	ops, asked, err := p1.CrossCheck(ctx, names)
	if err != nil || asked != 1 {
		t.Fatalf("CrossCheck: asked %d, err %v", asked, err)
	}
	for _, n := range names {
		if got := opinionsString(ops[n]); got != "s2=/unreachable" {
			t.Fatalf("opinion about unknown member %s: %q, want s2's (no status, unreachable)", n, got)
		}
	}
}

func opinionsString(ops []Opinion) string {
	var out []string
	for _, o := range ops {
		r := "unreachable"
		if o.Reachable {
			r = "reachable"
		}
		out = append(out, o.Server+"="+string(o.Status)+"/"+r)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}
