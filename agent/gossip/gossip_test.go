package gossip

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/internal/serfpool"
)

const token = "test-cluster-token-0123456789"

func logger(t *testing.T) *slog.Logger {
	t.Helper()
	if os.Getenv("GOSSIP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// fast shortens gossip timings so failures are seen within a second.
func fast(c *serfpool.Config) {
	c.ProbeInterval = 100 * time.Millisecond
	c.ProbeTimeout = 50 * time.Millisecond
	c.GossipInterval = 20 * time.Millisecond
	c.PushPullInterval = time.Second
	c.TCPTimeout = time.Second
	c.SuspicionMult = 2
	c.LeavePropagateDelay = 200 * time.Millisecond
	c.DeadNodeReclaimTime = 100 * time.Millisecond
	c.RetryJoinInterval = 50 * time.Millisecond
	c.RetryJoinMaxInterval = 200 * time.Millisecond
}

// gossipKey is the key servers derive from the token, which agents receive
// with their credentials: the two must meet in one pool.
func gossipKey(t *testing.T) []byte {
	t.Helper()
	k, err := serfpool.GossipKey(token)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func startServer(t *testing.T, name, bind string, join ...string) *serfpool.Pool {
	t.Helper()
	c := serfpool.DefaultConfig()
	c.NodeName, c.Role, c.Token = name, serfpool.RoleServer, token
	c.BindAddr, c.RaftAddr = bind, name+":8300"
	c.Join = join
	c.Logger = logger(t)
	fast(&c)
	p, err := serfpool.Start(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown() })
	return p
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func status(p *serfpool.Pool, name string) serfpool.Status {
	for _, m := range p.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return ""
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func TestJoinPublishesTheNode(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s1 := startServer(t, "s1", "127.0.0.1:0")
	m, err := Join(ctx, Config{NodeName: "node-a", Zone: "zone-1", KubeletAddr: "127.0.0.1:10250", GossipKey: gossipKey(t),
		Servers: []string{s1.Addr()}, BindAddr: "127.0.0.1:0", Logger: logger(t), Tune: fast})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	eventually(t, "s1 sees node-a", func() bool { return status(s1, "node-a") == serfpool.StatusAlive })
	for _, mb := range s1.Members() {
		if mb.Name == "node-a" && (mb.Role != serfpool.RoleAgent || mb.Zone != "zone-1" || mb.APIAddr != "127.0.0.1:10250") {
			t.Errorf("s1 sees node-a as %+v, want an agent in zone-1 with kubelet 127.0.0.1:10250", mb)
		}
	}
	if got := m.Servers(); len(got) != 1 || got[0].Name != "s1" {
		t.Errorf("Servers() = %v, want s1", got)
	}
}

// TestMemberOutlivesItsFirstServer: the server the agent joined through
// goes away; the agent keeps gossiping with the others it learned of.
func TestMemberOutlivesItsFirstServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s1 := startServer(t, "s1", "127.0.0.1:0")
	s2 := startServer(t, "s2", "127.0.0.1:0", s1.Addr())
	m, err := Join(ctx, Config{NodeName: "node-a", GossipKey: gossipKey(t), Servers: []string{s1.Addr()},
		BindAddr: "127.0.0.1:0", Logger: logger(t), Tune: fast, RejoinInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	eventually(t, "s2 sees node-a", func() bool { return status(s2, "node-a") == serfpool.StatusAlive })
	if err := s1.Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "s2 sees s1 failed", func() bool { return status(s2, "s1") == serfpool.StatusFailed })
	if got := status(s2, "node-a"); got != serfpool.StatusAlive {
		t.Fatalf("s2 sees node-a %s after s1 stopped, want alive", got)
	}
	// The member's own view converges a little after s2's (it learns of s1's
	// failure by gossip, and may briefly suspect s2 on a busy machine).
	eventually(t, "the member sees s2 alone", func() bool {
		got := m.Servers()
		return len(got) == 1 && got[0].Name == "s2"
	})
}

// TestRejoinAfterServersForgetIt: every server the agent knew restarts
// with no memory of it (a fresh pool on the same address); the agent,
// seeing no server alive, joins again through the addresses it knew.
func TestRejoinAfterServersForgetIt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := freeAddr(t)
	s1 := startServer(t, "s1", addr)
	m, err := Join(ctx, Config{NodeName: "node-a", GossipKey: gossipKey(t), Servers: []string{addr},
		BindAddr: "127.0.0.1:0", Logger: logger(t), Tune: fast, RejoinInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	eventually(t, "s1 sees node-a", func() bool { return status(s1, "node-a") == serfpool.StatusAlive })
	if err := s1.Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node-a sees no server", func() bool { return len(m.Servers()) == 0 })

	again := startServer(t, "s1", addr) // no Join: only the agent can bring them together
	eventually(t, "the restarted s1 sees node-a", func() bool { return status(again, "node-a") == serfpool.StatusAlive })
}

func TestLeaveIsSeenAsLeft(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s1 := startServer(t, "s1", "127.0.0.1:0")
	m, err := Join(ctx, Config{NodeName: "node-a", GossipKey: gossipKey(t), Servers: []string{s1.Addr()},
		BindAddr: "127.0.0.1:0", Logger: logger(t), Tune: fast})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "s1 sees node-a", func() bool { return status(s1, "node-a") == serfpool.StatusAlive })
	if err := m.Leave(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "s1 sees node-a left", func() bool { return status(s1, "node-a") == serfpool.StatusLeft })
	if err := m.Close(); err != nil {
		t.Errorf("Close after Leave: %v", err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	_, err := Join(context.Background(), Config{GossipKey: gossipKey(t)})
	if err == nil || !strings.Contains(err.Error(), "NodeName") || !strings.Contains(err.Error(), "Servers") {
		t.Fatalf("Join with no name and no servers: %v; want errors naming NodeName and Servers", err)
	}
	_, err = Join(context.Background(), Config{NodeName: "n", Servers: []string{"127.0.0.1"}})
	if err == nil || !strings.Contains(err.Error(), "GossipKey") {
		t.Fatalf("Join without a gossip key: %v; want an error naming GossipKey", err)
	}
}
