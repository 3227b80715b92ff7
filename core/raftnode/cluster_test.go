package raftnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

type testCluster struct {
	nodes []*Node
	sms   []*kvSM
}

// startCluster starts size nodes on loopback: the first bootstraps, the
// others are added as voters by the leader.
func startCluster(t testing.TB, size int, tune func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{}
	for i := range size {
		cfg := fastConfig(t, fmt.Sprintf("n%d", i+1), t.TempDir())
		cfg.Bootstrap = i == 0
		if tune != nil {
			tune(&cfg)
		}
		sm := newKV()
		n := mustNew(t, cfg, sm)
		t.Cleanup(func() { _ = n.Shutdown() })
		c.nodes = append(c.nodes, n)
		c.sms = append(c.sms, sm)
		if i == 0 {
			waitLeader(t, n)
			continue
		}
		c.addVoter(t, n)
	}
	return c
}

// addVoter adds n through whichever node leads: on a loaded machine the
// fast test timeouts may move leadership while the cluster forms.
func (c *testCluster) addVoter(t testing.TB, n *Node) {
	t.Helper()
	err := errors.New("no leader")
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, m := range c.nodes {
			if m != n && m.IsLeader() {
				if err = m.AddVoter(ctxT(t, 5*time.Second), n.ID(), n.Addr()); err == nil {
					return
				}
			}
		}
	}
	t.Fatalf("AddVoter %s: %v", n.ID(), err)
}

// leader waits until exactly one live node is leader and returns its index.
func (c *testCluster) leader(t testing.TB, skip ...int) int {
	t.Helper()
	var found int
	waitFor(t, 10*time.Second, "a single leader", func() bool {
		count := 0
		for i, n := range c.nodes {
			if contains(skip, i) {
				continue
			}
			if n.IsLeader() {
				count, found = count+1, i
			}
		}
		return count == 1
	})
	return found
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func TestClusterApplyFollowersAndFailover(t *testing.T) {
	c := startCluster(t, 3, nil)
	ctx := ctxT(t, 30*time.Second)
	li := c.leader(t)
	leader := c.nodes[li]
	events, cancel := leader.Subscribe()
	defer cancel()

	var last uint64
	for i := range 10 {
		_, idx, err := leader.Apply(ctx, setCmd(fmt.Sprint("k", i), "v"))
		if err != nil {
			t.Fatalf("Apply on leader: %v", err)
		}
		last = idx
	}
	for i, n := range c.nodes {
		if err := n.WaitApplied(ctx, last); err != nil {
			t.Fatalf("node %s WaitApplied(%d): %v", n.ID(), last, err)
		}
		if got := c.sms[i].size(); got != 10 {
			t.Fatalf("node %s has %d keys, want 10", n.ID(), got)
		}
	}

	for i, n := range c.nodes {
		if i == li {
			continue
		}
		if addr, id := n.Leader(); addr != leader.Addr() || id != leader.ID() {
			t.Fatalf("follower %s names leader %s@%s, want %s@%s", n.ID(), id, addr, leader.ID(), leader.Addr())
		}
	}

	if err := leader.Shutdown(); err != nil {
		t.Fatalf("leader Shutdown: %v", err)
	}
	// raft notifies loss only best-effort at shutdown; subscribers rely on
	// the channel being closed, which this loop requires to terminate.
	for range events {
	}

	ni := c.leader(t, li)
	next := c.nodes[ni]
	idx, err := next.LinearizableRead(ctx)
	if err != nil {
		t.Fatalf("LinearizableRead on new leader %s: %v", next.ID(), err)
	}
	if idx < last {
		t.Fatalf("new leader read index %d is below the last acknowledged write %d", idx, last)
	}
	if got := c.sms[ni].size(); got != 10 {
		t.Fatalf("new leader state has %d keys after read, want 10", got)
	}
	if next.Term() <= 1 {
		t.Fatalf("new leader term %d, want a later term than the first", next.Term())
	}
	if _, _, err := next.Apply(ctx, setCmd("after", "failover")); err != nil {
		t.Fatalf("Apply on new leader: %v", err)
	}
}

func TestLinearizableReadSeesPriorWrites(t *testing.T) {
	c := startCluster(t, 3, nil)
	ctx := ctxT(t, 20*time.Second)
	leader := c.nodes[c.leader(t)]
	sm := c.sms[c.leader(t)]
	for i := range 20 {
		v := fmt.Sprint(i)
		if _, _, err := leader.Apply(ctx, setCmd("k", v)); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if _, err := leader.LinearizableRead(ctx); err != nil {
			t.Fatalf("LinearizableRead: %v", err)
		}
		if got, _ := sm.get("k"); got != v {
			t.Fatalf("read after write %q saw %q", v, got)
		}
	}
}

// TestUnknownOutcome loses quorum under a leader and checks that writes it
// had already accepted are reported as unknown, never as failed or
// not-leader.
func TestUnknownOutcome(t *testing.T) {
	c := startCluster(t, 3, func(cfg *Config) {
		// A long lease keeps the leader in place after quorum is gone, so
		// the writes below are enqueued before it steps down.
		cfg.HeartbeatTimeout = 2 * time.Second
		cfg.ElectionTimeout = 2 * time.Second
		cfg.LeaderLeaseTimeout = 2 * time.Second
	})
	li := c.leader(t)
	leader := c.nodes[li]
	for i, n := range c.nodes {
		if i != li {
			if err := n.Shutdown(); err != nil {
				t.Fatalf("Shutdown %s: %v", n.ID(), err)
			}
		}
	}

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, _, err := leader.Apply(short, setCmd("a", "1"))
	if !errors.Is(err, ErrUnknownOutcome) || errors.Is(err, ErrNotLeader) {
		t.Fatalf("Apply with ctx ending after enqueue: %v, want ErrUnknownOutcome", err)
	}

	_, _, err = leader.Apply(ctxT(t, 20*time.Second), setCmd("b", "2"))
	if !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, raft.ErrLeadershipLost) {
		t.Fatalf("Apply while leadership is lost: %v, want ErrUnknownOutcome wrapping raft.ErrLeadershipLost", err)
	}
}

func TestClusterOverMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	c := startCluster(t, 3, func(cfg *Config) {
		cfg.TLS = ca.mtlsConfig(t, cfg.NodeID)
	})
	ctx := ctxT(t, 20*time.Second)
	leader := c.nodes[c.leader(t)]
	_, idx, err := leader.Apply(ctx, setCmd("secure", "yes"))
	if err != nil {
		t.Fatalf("Apply over TLS: %v", err)
	}
	for i, n := range c.nodes {
		if err := n.WaitApplied(ctx, idx); err != nil {
			t.Fatalf("%s WaitApplied over TLS: %v", n.ID(), err)
		}
		if v, _ := c.sms[i].get("secure"); v != "yes" {
			t.Fatalf("%s did not replicate over TLS: %q", n.ID(), v)
		}
	}
}

func TestStreamLayerTLS(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	noCert := ca.mtlsConfig(t, "client")
	noCert.Certificates = nil
	tests := []struct {
		name     string
		client   *tls.Config
		wantDial bool // Dial (client-side handshake) succeeds
		wantEcho bool // server accepts and echoes
	}{
		{"same CA", ca.mtlsConfig(t, "client"), true, true},
		{"server not trusted", other.mtlsConfig(t, "client"), false, false},
		{"client without certificate", noCert, true, false},
		{"client cert from another CA", withRoots(other.mtlsConfig(t, "client"), ca), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newMux("127.0.0.1:0", "", ca.mtlsConfig(t, "server"), testLogger(t), defaultMuxLimits())
			if err != nil {
				t.Fatalf("server mux: %v", err)
			}
			defer m.Close()
			srv := m.listener(connRaft)
			go func() {
				conn, err := srv.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				buf := make([]byte, 4)
				if _, err := conn.Read(buf); err == nil {
					_, _ = conn.Write(buf)
				}
			}()
			cli := &streamLayer{tls: tt.client}
			conn, err := cli.Dial(raft.ServerAddress(srv.Addr().String()), 5*time.Second)
			if (err == nil) != tt.wantDial {
				t.Fatalf("Dial error %v, want success=%v", err, tt.wantDial)
			}
			if err != nil {
				return
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, werr := conn.Write([]byte("ping"))
			buf := make([]byte, 4)
			_, rerr := conn.Read(buf)
			gotEcho := werr == nil && rerr == nil && string(buf) == "ping"
			if gotEcho != tt.wantEcho {
				t.Fatalf("echo = %v (write %v, read %v), want %v", gotEcho, werr, rerr, tt.wantEcho)
			}
		})
	}
}

// TestFollowerInstallsSnapshot adds a server after the log was compacted, so
// it can only catch up through InstallSnapshot; its applied index must jump
// to the snapshot's and its state must match.
func TestFollowerInstallsSnapshot(t *testing.T) {
	ctx := ctxT(t, 20*time.Second)
	tune := func(cfg *Config) {
		cfg.SnapshotThreshold = 16
		cfg.SnapshotInterval = 20 * time.Millisecond
		cfg.TrailingLogs = 4
	}
	c := startCluster(t, 1, tune)
	leader := c.nodes[0]
	var last uint64
	for i := range 50 {
		_, idx, err := leader.Apply(ctx, setCmd(fmt.Sprint("k", i), "v"))
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		last = idx
	}
	waitFor(t, 10*time.Second, "the leader to snapshot and compact", func() bool {
		first, err := leader.logs.FirstIndex()
		return err == nil && first > 1
	})

	cfg := fastConfig(t, "n2", t.TempDir())
	tune(&cfg)
	sm := newKV()
	n2 := mustNew(t, cfg, sm)
	t.Cleanup(func() { _ = n2.Shutdown() })
	if err := leader.AddVoter(ctx, n2.ID(), n2.Addr()); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	if err := n2.WaitApplied(ctx, last); err != nil {
		t.Fatalf("new follower WaitApplied(%d): %v", last, err)
	}
	sm.mu.Lock()
	restores := sm.restores
	sm.mu.Unlock()
	if restores == 0 {
		t.Fatal("new follower caught up without installing a snapshot; the test did not exercise InstallSnapshot")
	}
	if got := sm.size(); got != 50 {
		t.Fatalf("follower has %d keys after snapshot install, want 50", got)
	}
}
