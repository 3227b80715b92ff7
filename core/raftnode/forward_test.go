package raftnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// transports runs a cluster test over plain TCP and over mutual TLS.
func transports(t *testing.T, run func(t *testing.T, tune func(*Config))) {
	t.Run("tcp", func(t *testing.T) { run(t, nil) })
	t.Run("mtls", func(t *testing.T) {
		ca := newTestCA(t)
		run(t, func(cfg *Config) { cfg.TLS = ca.mtlsConfig(t, cfg.NodeID) })
	})
}

func (c *testCluster) followers(t testing.TB) []int {
	li := c.leader(t)
	var fs []int
	for i := range c.nodes {
		if i != li {
			fs = append(fs, i)
		}
	}
	return fs
}

func TestFollowerApplyForwardsToLeader(t *testing.T) {
	transports(t, func(t *testing.T, tune func(*Config)) {
		c := startCluster(t, 3, tune)
		ctx := ctxT(t, 20*time.Second)
		li := c.leader(t)
		prev := ""
		for round := range 6 {
			fi := c.followers(t)[round%2]
			f := c.nodes[fi]
			v := fmt.Sprint("v", round)
			res, idx, err := f.Apply(ctx, setCmd("k", v))
			if err != nil {
				t.Fatalf("Apply on follower %s: %v", f.ID(), err)
			}
			// The leader's state machine returns the previous value; the
			// follower must return exactly that.
			if res != prev {
				t.Fatalf("round %d: follower %s returned %v, want the previous value %q", round, f.ID(), res, prev)
			}
			if got, _ := c.sms[fi].get("k"); got != v {
				t.Fatalf("round %d: follower %s state has k=%q right after its Apply returned, want %q", round, f.ID(), got, v)
			}
			if got := f.AppliedIndex(); got < idx {
				t.Fatalf("follower applied index %d below the write's index %d", got, idx)
			}
			if err := c.nodes[li].WaitApplied(ctx, idx); err != nil {
				t.Fatalf("leader WaitApplied(%d): %v", idx, err)
			}
			if got, _ := c.sms[li].get("k"); got != v {
				t.Fatalf("leader state has k=%q after the forwarded write, want %q", got, v)
			}
			prev = v
		}
		// Sequential forwards reuse a pooled connection rather than dialing
		// (and handshaking) per write.
		for _, fi := range c.followers(t) {
			if d := c.nodes[fi].rpcc.dials.Load(); d > 1 {
				t.Errorf("follower %s dialed the leader %d times for sequential writes, want 1", c.nodes[fi].ID(), d)
			}
		}
	})
}

// TestFollowerReadSeesOtherNodesWrites: a write acknowledged on one server is
// visible to a linearizable read started afterwards on any other server.
func TestFollowerReadSeesOtherNodesWrites(t *testing.T) {
	transports(t, func(t *testing.T, tune func(*Config)) {
		c := startCluster(t, 3, tune)
		ctx := ctxT(t, 20*time.Second)
		c.leader(t)
		for i := range 30 {
			w, r := i%3, (i+1+i/3%2)%3 // every ordered pair of distinct nodes
			v := fmt.Sprint(i)
			if _, _, err := c.nodes[w].Apply(ctx, setCmd("k", v)); err != nil {
				t.Fatalf("Apply on %s: %v", c.nodes[w].ID(), err)
			}
			if _, err := c.nodes[r].LinearizableRead(ctx); err != nil {
				t.Fatalf("LinearizableRead on %s: %v", c.nodes[r].ID(), err)
			}
			if got, _ := c.sms[r].get("k"); got != v {
				t.Fatalf("write %q acknowledged by %s, then a read on %s saw %q",
					v, c.nodes[w].ID(), c.nodes[r].ID(), got)
			}
		}
	})
}

func TestConcurrentFollowerWrites(t *testing.T) {
	c := startCluster(t, 3, nil)
	ctx := ctxT(t, 30*time.Second)
	fs := c.followers(t)
	const writers = 64
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		indexes = map[uint64]string{}
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := c.nodes[fs[w%len(fs)]]
			k := fmt.Sprint("w", w)
			for i, want := range []string{"", "a", "b"} {
				v := string(rune('a' + i))
				res, idx, err := n.Apply(ctx, setCmd(k, v))
				if err != nil {
					t.Errorf("writer %d on %s: Apply: %v", w, n.ID(), err)
					return
				}
				if res != want {
					t.Errorf("writer %d: Apply %s=%s returned %v, want %q (another command's result?)", w, k, v, res, want)
				}
				mu.Lock()
				if other, dup := indexes[idx]; dup {
					t.Errorf("index %d returned for both %s and %s=%s", idx, other, k, v)
				}
				indexes[idx] = k + "=" + v
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var last uint64
	for idx := range indexes {
		last = max(last, idx)
	}
	for i, n := range c.nodes {
		if err := n.WaitApplied(ctx, last); err != nil {
			t.Fatalf("%s WaitApplied(%d): %v", n.ID(), last, err)
		}
		if got := c.sms[i].size(); got != writers {
			t.Fatalf("%s holds %d keys, want %d", n.ID(), got, writers)
		}
	}
}

// TestFollowerWritesAcrossLeaderFailover shuts the leader down while the
// followers write. Every call must either succeed with the right result or
// report that nothing was proposed or that the outcome is unknown; writes
// must resume against the new leader.
func TestFollowerWritesAcrossLeaderFailover(t *testing.T) {
	c := startCluster(t, 3, nil)
	ctx := ctxT(t, 30*time.Second)
	li := c.leader(t)
	fs := c.followers(t)
	var failedOver atomic.Bool
	var wg sync.WaitGroup
	const perNode = 4
	afterFailover := make([]atomic.Int32, len(fs)*perNode)
	for wi := range len(fs) * perNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := c.nodes[fs[wi%len(fs)]]
			k := fmt.Sprint("w", wi)
			// possible holds every value the key may hold before the next
			// write: the last acknowledged one plus any unknown since.
			possible := map[string]bool{"": true}
			for i := 1; afterFailover[wi].Load() < 5; i++ {
				if ctx.Err() != nil {
					t.Errorf("writer %d: only %d writes after failover", wi, afterFailover[wi].Load())
					return
				}
				v := fmt.Sprint(i)
				res, _, err := n.Apply(ctx, setCmd(k, v))
				switch {
				case err == nil:
					if s, _ := res.(string); !possible[s] {
						t.Errorf("writer %d: write %s returned previous value %v, possible: %v", wi, v, res, possible)
						return
					}
					possible = map[string]bool{v: true}
					if failedOver.Load() {
						afterFailover[wi].Add(1)
					}
				case errors.Is(err, ErrUnknownOutcome):
					possible[v] = true
				case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNotApplied):
					// not proposed
				default:
					t.Errorf("writer %d: Apply: unexpected error %v", wi, err)
					return
				}
			}
		}()
	}
	waitFor(t, 10*time.Second, "some writes before the failover", func() bool {
		return c.sms[li].size() == len(afterFailover)
	})
	if err := c.nodes[li].Shutdown(); err != nil {
		t.Fatalf("leader Shutdown: %v", err)
	}
	failedOver.Store(true)
	wg.Wait()
	// The survivors agree on every key.
	ni := c.leader(t, li)
	idx, err := c.nodes[ni].LinearizableRead(ctx)
	if err != nil {
		t.Fatalf("LinearizableRead on new leader: %v", err)
	}
	for _, fi := range fs {
		if err := c.nodes[fi].WaitApplied(ctx, idx); err != nil {
			t.Fatalf("WaitApplied: %v", err)
		}
	}
	for wi := range afterFailover {
		k := fmt.Sprint("w", wi)
		a, _ := c.sms[fs[0]].get(k)
		b, _ := c.sms[fs[1]].get(k)
		if a != b {
			t.Fatalf("survivors disagree on %s: %q vs %q", k, a, b)
		}
	}
}

func TestNoLeaderFailsAfterBoundedWait(t *testing.T) {
	c := startCluster(t, 3, func(cfg *Config) { cfg.LeaderWaitTimeout = 300 * time.Millisecond })
	li := c.leader(t)
	fs := c.followers(t)
	survivor := c.nodes[fs[0]]
	ctx := ctxT(t, 10*time.Second)
	// A forwarded write first, so the survivor holds pooled connections to
	// the leader that is about to go away.
	if _, _, err := survivor.Apply(ctx, setCmd("a", "1")); err != nil {
		t.Fatalf("Apply before the outage: %v", err)
	}
	for _, i := range []int{li, fs[1]} {
		if err := c.nodes[i].Shutdown(); err != nil {
			t.Fatalf("Shutdown %s: %v", c.nodes[i].ID(), err)
		}
	}
	_, _, err := survivor.Apply(ctx, setCmd("b", "2"))
	if !errors.Is(err, ErrNoLeader) || !errors.Is(err, ErrNotLeader) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Apply without a leader: %v, want ErrNoLeader (not proposed)", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Apply without a leader waited until the test's context ended; want LeaderWaitTimeout")
	}
	if _, err := survivor.LinearizableRead(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("LinearizableRead without a leader: %v, want ErrNoLeader", err)
	}
	// A shorter ctx ends the wait first, and says so.
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := survivor.Apply(short, setCmd("c", "3")); !errors.Is(err, ErrNoLeader) ||
		!errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Apply with a short ctx and no leader: %v, want ErrNoLeader wrapping DeadlineExceeded", err)
	}
	if err := survivor.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, _, err := survivor.Apply(ctx, setCmd("d", "4")); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Apply after Shutdown: %v, want ErrShutdown", err)
	}
}

// TestForwardRequiresClusterCertificate: with mutual TLS, a client whose
// certificate the cluster's CA did not sign cannot use the RPC.
func TestForwardRequiresClusterCertificate(t *testing.T) {
	ca := newTestCA(t)
	c := startCluster(t, 1, func(cfg *Config) { cfg.TLS = ca.mtlsConfig(t, cfg.NodeID) })
	ctx := ctxT(t, 10*time.Second)
	addr := c.nodes[0].Addr()

	member := &rpcClient{tls: ca.mtlsConfig(t, "member"), idle: map[string][]*rpcConn{}}
	defer member.close()
	resp, err := member.call(ctx, addr, opReadIndex, nil)
	if err != nil || resp.status != statusOK {
		t.Fatalf("read index with a cluster certificate: %+v, %v", resp, err)
	}

	stranger := &rpcClient{tls: withRoots(newTestCA(t).mtlsConfig(t, "stranger"), ca), idle: map[string][]*rpcConn{}}
	defer stranger.close()
	if resp, err := stranger.call(ctx, addr, opForward, setCmd("x", "y")); err == nil {
		t.Fatalf("forward with a foreign certificate answered %+v, want a refused connection", resp)
	}
	if _, ok := c.sms[0].get("x"); ok {
		t.Fatal("a write forwarded with a foreign certificate was applied")
	}
}

// TestMuxDropsUnknownConnectionKind: a connection announcing neither raft
// nor the RPC is closed, and the port keeps serving both.
func TestMuxDropsUnknownConnectionKind(t *testing.T) {
	c := startCluster(t, 1, nil)
	conn, err := net.DialTimeout("tcp", c.nodes[0].Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte{0xff, 0, 0, 0}); err != nil {
		t.Fatalf("write: %v", err)
	}
	// EOF, or a reset because the server closed with our bytes unread.
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read on a connection of unknown kind: %v, want it closed by the server", err)
	}
	if _, _, err := c.nodes[0].Apply(ctxT(t, 5*time.Second), setCmd("still", "works")); err != nil {
		t.Fatalf("Apply after a bad connection: %v", err)
	}
}
