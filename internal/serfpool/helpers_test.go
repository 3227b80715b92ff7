package serfpool

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

const testToken = "test-cluster-token-0123456789"

// logBuffer collects log output for assertions and dumps it on failure.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	t.Helper()
	lb := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("MEMBERSHIP_TEST_LOG") != "" {
			t.Logf("log:\n%s", lb.String())
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// fastConfig is a server config with gossip timings short enough that
// failure detection and leave propagation take well under a second.
func fastConfig(t *testing.T, name string) Config {
	t.Helper()
	log, _ := testLogger(t)
	c := DefaultConfig()
	c.NodeName = name
	c.Role = RoleServer
	c.BindAddr = "127.0.0.1:0"
	c.RaftAddr = name + ":8300" // never dialled
	c.APIAddr = "127.0.0.1:6443"
	c.Zone = "zone-a"
	c.Token = testToken
	c.Logger = log.With("test_node", name)
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
	c.ReconcileInterval = 100 * time.Millisecond
	return c
}

func startPool(t *testing.T, ctx context.Context, cfg Config) *Pool {
	t.Helper()
	p, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.NodeName, err)
	}
	t.Cleanup(func() {
		if err := p.Shutdown(); err != nil {
			t.Errorf("Shutdown(%s): %v", cfg.NodeName, err)
		}
	})
	return p
}

// eventually polls cond until it holds; the deadline only bounds a failing
// test, it asserts nothing about speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func member(p *Pool, name string) (Member, bool) {
	for _, m := range p.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func statusOf(p *Pool, name string) Status {
	m, ok := member(p, name)
	if !ok {
		return ""
	}
	return m.Status
}

func names(ms []Member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name+"="+string(m.Status))
	}
	return strings.Join(s, ",")
}
