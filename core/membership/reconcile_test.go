package membership

import (
	"github.com/keelson/keelson/internal/serfpool"

	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRaft is an in-memory raft configuration that applies changes at once.
type fakeRaft struct {
	mu      sync.Mutex
	leader  bool
	servers []RaftServer
	log     []string
	failAdd error
}

func newFakeRaft(voters ...string) *fakeRaft {
	f := &fakeRaft{leader: true}
	for _, v := range voters {
		f.servers = append(f.servers, RaftServer{ID: v, Address: v + ":8300", Voter: true})
	}
	return f
}

func (f *fakeRaft) IsLeader() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

func (f *fakeRaft) Servers() ([]RaftServer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.servers), nil
}

func (f *fakeRaft) AddVoter(_ context.Context, id, addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAdd != nil {
		return f.failAdd
	}
	f.log = append(f.log, "add "+id)
	for i, s := range f.servers {
		if s.ID == id {
			f.servers[i] = RaftServer{ID: id, Address: addr, Voter: true}
			return nil
		}
	}
	f.servers = append(f.servers, RaftServer{ID: id, Address: addr, Voter: true})
	return nil
}

func (f *fakeRaft) RemoveServer(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, "remove "+id)
	f.servers = slices.DeleteFunc(f.servers, func(s RaftServer) bool { return s.ID == id })
	return nil
}

// voters lists the configuration as "id" for voters and "id(nv)" for
// non-voters, sorted.
func (f *fakeRaft) voters() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, s := range f.servers {
		if s.Voter {
			out = append(out, s.ID)
		} else {
			out = append(out, s.ID+"(nv)")
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

const grace = time.Minute

// srv is a server member whose status began at t0-ago.
func srv(name string, st serfpool.Status, ago time.Duration) serfpool.Member {
	return serfpool.Member{Name: name, Role: serfpool.RoleServer, RaftAddr: name + ":8300", Status: st, Since: t0.Add(-ago)}
}

func voters(ids ...string) []RaftServer {
	var out []RaftServer
	for _, id := range ids {
		out = append(out, RaftServer{ID: id, Address: id + ":8300", Voter: true})
	}
	return out
}

func actionsString(as []action) string {
	var out []string
	for _, a := range as {
		s := string(a.kind) + " " + a.id
		if a.kind == actAdd {
			s += "@" + a.addr
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

func TestPlan(t *testing.T) {
	alive := func(n string) serfpool.Member { return srv(n, serfpool.StatusAlive, time.Hour) }
	failedFor := func(n string, d time.Duration) serfpool.Member { return srv(n, serfpool.StatusFailed, d) }
	tests := []struct {
		name      string
		members   []serfpool.Member
		servers   []RaftServer
		missing   map[string]time.Time
		minVoters int
		want      string
		wantHold  string
	}{
		{
			name:    "steady state does nothing",
			members: []serfpool.Member{alive("s1"), alive("s2"), alive("s3")},
			servers: voters("s1", "s2", "s3"),
		},
		{
			name:    "alive server missing from raft is added",
			members: []serfpool.Member{alive("s1"), alive("s2"), alive("s3"), alive("s4")},
			servers: voters("s1", "s2", "s3"),
			want:    "add voter s4@s4:8300",
		},
		{
			name: "agents, servers without raft address and non-alive servers are not added",
			members: []serfpool.Member{alive("s1"), {Name: "a1", Role: serfpool.RoleAgent, Status: serfpool.StatusAlive},
				{Name: "s9", Role: serfpool.RoleServer, Status: serfpool.StatusAlive}, failedFor("s8", time.Hour), srv("s7", serfpool.StatusLeaving, 0)},
			servers: voters("s1"),
		},
		{
			name:    "changed raft address re-adds the voter",
			members: []serfpool.Member{alive("s1"), {Name: "s2", Role: serfpool.RoleServer, RaftAddr: "10.0.0.2:8300", Status: serfpool.StatusAlive}},
			servers: voters("s1", "s2"),
			want:    "add voter s2@10.0.0.2:8300",
		},
		{
			name:    "non-voter is promoted",
			members: []serfpool.Member{alive("s1"), alive("s2")},
			servers: append(voters("s1"), RaftServer{ID: "s2", Address: "s2:8300"}),
			want:    "add voter s2@s2:8300",
		},
		{
			name:      "left server is removed at once, even below the floor",
			members:   []serfpool.Member{alive("s1"), alive("s2"), srv("s3", serfpool.StatusLeft, 0)},
			servers:   voters("s1", "s2", "s3"),
			minVoters: 3,
			want:      "remove server s3",
		},
		{
			name:    "leaving server is left alone until it has left",
			members: []serfpool.Member{alive("s1"), alive("s2"), srv("s3", serfpool.StatusLeaving, time.Hour)},
			servers: voters("s1", "s2", "s3"),
		},
		{
			name:     "failed server within the grace period is kept",
			members:  []serfpool.Member{alive("s1"), alive("s2"), failedFor("s3", grace/2)},
			servers:  voters("s1", "s2", "s3"),
			wantHold: "s3: dead for 30s",
		},
		{
			name:    "failed server past the grace period is removed",
			members: []serfpool.Member{alive("s1"), alive("s2"), failedFor("s3", grace)},
			servers: voters("s1", "s2", "s3"),
			want:    "remove server s3",
		},
		{
			name:      "never below BootstrapExpect/MinQuorum",
			members:   []serfpool.Member{alive("s1"), alive("s2"), failedFor("s3", time.Hour)},
			servers:   voters("s1", "s2", "s3"),
			minVoters: 3,
			wantHold:  "fewer than 3 voters",
		},
		{
			name:      "above the floor a failed server is removed",
			members:   []serfpool.Member{alive("s1"), alive("s2"), alive("s3"), failedFor("s4", time.Hour)},
			servers:   voters("s1", "s2", "s3", "s4"),
			minVoters: 3,
			want:      "remove server s4",
		},
		{
			name:     "never a majority at once: one of three",
			members:  []serfpool.Member{alive("s1"), failedFor("s2", time.Hour), failedFor("s3", time.Hour)},
			servers:  voters("s1", "s2", "s3"),
			want:     "remove server s2",
			wantHold: "s3: removing it would remove a majority of the 3 voters",
		},
		{
			name: "two of five",
			members: []serfpool.Member{alive("s1"), alive("s2"), alive("s3"),
				failedFor("s4", time.Hour), failedFor("s5", time.Hour)},
			servers: voters("s1", "s2", "s3", "s4", "s5"),
			want:    "remove server s4; remove server s5",
		},
		{
			name:    "the leader never removes itself",
			members: []serfpool.Member{failedFor("s1", time.Hour), alive("s2"), alive("s3")},
			servers: voters("s1", "s2", "s3"),
		},
		{
			name:    "odd voters: remove the dead voter before adding",
			members: []serfpool.Member{alive("s1"), alive("s2"), failedFor("s3", time.Hour), alive("s4")},
			servers: voters("s1", "s2", "s3"),
			want:    "remove server s3; add voter s4@s4:8300",
		},
		{
			name:    "even voters: add first, removals in a later round",
			members: []serfpool.Member{alive("s1"), alive("s2"), alive("s3"), failedFor("s4", time.Hour), alive("s5")},
			servers: voters("s1", "s2", "s3", "s4"),
			want:    "add voter s5@s5:8300",
		},
		{
			name:    "raft server unknown to the pool past the grace period is removed",
			members: []serfpool.Member{alive("s1"), alive("s2"), alive("s3")},
			servers: voters("s1", "s2", "s3", "ghost"),
			missing: map[string]time.Time{"ghost": t0.Add(-grace)},
			want:    "remove server ghost",
		},
		{
			name:     "raft server just missing from the pool is kept",
			members:  []serfpool.Member{alive("s1"), alive("s2"), alive("s3")},
			servers:  voters("s1", "s2", "s3", "ghost"),
			missing:  map[string]time.Time{"ghost": t0.Add(-time.Second)},
			wantHold: "ghost: dead for 1s",
		},
		{
			name:      "failed non-voter is removed regardless of the floor",
			members:   []serfpool.Member{alive("s1"), failedFor("s2", time.Hour)},
			servers:   append(voters("s1"), RaftServer{ID: "s2", Address: "s2:8300"}),
			minVoters: 3,
			want:      "remove server s2",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := plan(planInput{
				self: "s1", members: tc.members, servers: tc.servers, missing: tc.missing,
				now: t0, grace: grace, minVoters: tc.minVoters,
			})
			if got := actionsString(d.actions); got != tc.want {
				t.Errorf("actions = %q, want %q", got, tc.want)
			}
			holds := strings.Join(d.holds, "; ")
			if (tc.wantHold == "") != (holds == "") || !strings.Contains(holds, tc.wantHold) {
				t.Errorf("holds = %q, want %q", holds, tc.wantHold)
			}
		})
	}
}

// TestReconcileRoundsConverge drives whole rounds against the fake raft: a
// dead voter is replaced by a new server without ever dropping below the
// BootstrapExpect floor.
func TestReconcileRoundsConverge(t *testing.T) {
	log, _ := testLogger(t)
	cfg := serfpool.DefaultConfig()
	cfg.NodeName, cfg.BootstrapExpect, cfg.DeadServerGrace = "s1", 3, grace
	members := []serfpool.Member{srv("s1", serfpool.StatusAlive, time.Hour), srv("s2", serfpool.StatusAlive, time.Hour),
		srv("s3", serfpool.StatusFailed, time.Hour), srv("s4", serfpool.StatusAlive, time.Minute)}
	fr := newFakeRaft("s1", "s2", "s3")
	rec := &reconciler{cfg: cfg, log: log, members: func() []serfpool.Member { return members }, raft: fr, missing: map[string]time.Time{}}
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		if err := rec.round(ctx, t0); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	if got, want := strings.Join(fr.log, "; "), "add s4; remove s3"; got != want {
		t.Errorf("changes = %q, want %q", got, want)
	}
	if got := fr.voters(); got != "s1,s2,s4" {
		t.Errorf("voters = %s, want s1,s2,s4", got)
	}

	// A follower changes nothing.
	members = append(members, srv("s5", serfpool.StatusAlive, 0))
	fr.leader = false
	if err := rec.round(ctx, t0); err != nil || fr.voters() != "s1,s2,s4" {
		t.Errorf("follower round: err=%v voters=%s", err, fr.voters())
	}

	// Errors are reported and retried by the next round.
	fr.leader, fr.failAdd = true, errors.New("leadership lost")
	if err := rec.round(ctx, t0); err == nil || !strings.Contains(err.Error(), "s5") {
		t.Errorf("round with failing AddVoter = %v, want an error naming s5", err)
	}
	fr.failAdd = nil
	if err := rec.round(ctx, t0); err != nil || fr.voters() != "s1,s2,s4,s5" {
		t.Errorf("retry round: err=%v voters=%s", err, fr.voters())
	}
}

// TestReconcileStaleServerGrace: a raft server the pool has never heard of is
// removed only after it has been missing for the grace period, measured from
// the first round that noticed.
func TestReconcileStaleServerGrace(t *testing.T) {
	log, _ := testLogger(t)
	cfg := serfpool.DefaultConfig()
	cfg.NodeName, cfg.DeadServerGrace = "s1", grace
	members := []serfpool.Member{srv("s1", serfpool.StatusAlive, 0), srv("s2", serfpool.StatusAlive, 0), srv("s3", serfpool.StatusAlive, 0)}
	fr := newFakeRaft("s1", "s2", "s3", "ghost")
	rec := &reconciler{cfg: cfg, log: log, members: func() []serfpool.Member { return members }, raft: fr, missing: map[string]time.Time{}}
	for _, at := range []time.Duration{0, grace / 2, grace - time.Second} {
		if err := rec.round(context.Background(), t0.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	if fr.voters() != "ghost,s1,s2,s3" {
		t.Fatalf("ghost removed within the grace period: %s", fr.voters())
	}
	if err := rec.round(context.Background(), t0.Add(grace)); err != nil {
		t.Fatal(err)
	}
	if fr.voters() != "s1,s2,s3" {
		t.Errorf("voters after the grace period = %s, want s1,s2,s3", fr.voters())
	}
}

// TestReconcileLoopWithPools runs the real loop over real pools: a server
// that joins is added, one that leaves is removed, and the loop stops with
// its context.
func TestReconcileLoopWithPools(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p1 := startPool(t, ctx, fastConfig(t, "s1"))
	fr := newFakeRaft("s1")
	done := make(chan error, 1)
	go func() { done <- Reconcile(ctx, p1, fr, nil) }()

	var pools []*serfpool.Pool
	for _, n := range []string{"s2", "s3"} {
		c := fastConfig(t, n)
		c.Join = []string{p1.Addr()}
		pools = append(pools, startPool(t, ctx, c))
	}
	eventually(t, "s2 and s3 added as voters", func() bool { return fr.voters() == "s1,s2,s3" })

	if err := pools[1].Leave(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "s3 removed after leaving", func() bool { return fr.voters() == "s1,s2" })

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Reconcile returned %v after cancel, want nil", err)
	}
	if got := fmt.Sprint(fr.log); got != "[add s2 add s3 remove s3]" && got != "[add s3 add s2 remove s3]" {
		t.Errorf("changes = %s", got)
	}
}

// TestReconcileMarksBootstrapped: a follower that finds itself in the raft
// configuration publishes the bootstrapped tag and changes nothing in raft.
func TestReconcileMarksBootstrapped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p1 := startPool(t, ctx, fastConfig(t, "s1"))
	c2 := fastConfig(t, "s2")
	c2.Join = []string{p1.Addr()}
	p2 := startPool(t, ctx, c2)

	fr := newFakeRaft("s1") // s2 not added yet
	fr.leader = false
	done := make(chan error, 1)
	go func() { done <- Reconcile(ctx, p2, fr, nil) }()
	eventually(t, "s1 sees s2", func() bool { return statusOf(p1, "s2") == serfpool.StatusAlive })
	if m, _ := member(p1, "s2"); m.Bootstrapped {
		t.Fatal("s2 claims raft state before it is in the configuration")
	}

	if err := fr.AddVoter(ctx, "s2", "s2:8300"); err != nil { // the leader adds it
		t.Fatal(err)
	}
	eventually(t, "s1 sees s2 bootstrapped", func() bool { m, _ := member(p1, "s2"); return m.Bootstrapped })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Reconcile = %v", err)
	}
	if got := strings.Join(fr.log, "; "); got != "add s2" {
		t.Errorf("follower changed raft: %q", got)
	}
}

// TestReconcileAddsOnlyProvenServers: a gossip member claiming role=server
// becomes a voter only once it proves the server identity; until then it is
// held out (and logged once), and the other changes of the round still happen.
func TestReconcileAddsOnlyProvenServers(t *testing.T) {
	log, logs := testLogger(t)
	cfg := serfpool.DefaultConfig()
	cfg.NodeName, cfg.DeadServerGrace = "s1", grace
	members := []serfpool.Member{srv("s1", serfpool.StatusAlive, time.Hour), srv("s2", serfpool.StatusAlive, time.Hour),
		srv("s3", serfpool.StatusAlive, time.Hour), srv("intruder", serfpool.StatusAlive, time.Minute)}
	fr := newFakeRaft("s1", "s2", "s3")
	var asked []string
	prove := func(_ context.Context, id, addr string) error {
		asked = append(asked, id+"@"+addr)
		if id == "intruder" {
			return errors.New("presents the peer certificate \"\", not \"keelson-server:intruder\"")
		}
		return nil
	}
	rec := &reconciler{cfg: cfg, log: log, members: func() []serfpool.Member { return members }, raft: fr,
		prove: prove, missing: map[string]time.Time{}, refused: map[string]string{}}
	for i := 0; i < 3; i++ {
		if err := rec.round(context.Background(), t0); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	if got := fr.voters(); got != "s1,s2,s3" {
		t.Errorf("voters = %s, want s1,s2,s3 (the unproven member held out)", got)
	}
	if len(asked) != 3 || !strings.HasPrefix(asked[0], "intruder@") {
		t.Errorf("proofs asked = %v, want the intruder's, once per round", asked)
	}
	if n := strings.Count(logs.String(), "did not prove a server identity"); n != 1 {
		t.Errorf("refusal logged %d times, want once:\n%s", n, logs.String())
	}
	// Once it proves the identity (a real server), it is added.
	prove2 := func(context.Context, string, string) error { return nil }
	rec.prove = prove2
	if err := rec.round(context.Background(), t0); err != nil {
		t.Fatal(err)
	}
	if got := fr.voters(); got != "intruder,s1,s2,s3" && got != "s1,s2,s3,intruder" {
		t.Errorf("voters after proof = %s, want the member added", got)
	}
}
