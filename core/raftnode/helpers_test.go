package raftnode

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// kvSM is the test state machine: "set k v" commands on a map. Apply returns
// the previous value so tests can check that the proposer gets the FSM's
// response.
type kvSM struct {
	mu       sync.Mutex
	data     map[string]string
	applied  []uint64 // indexes seen by Apply, to check non-command entries never arrive
	knowsNew bool     // a newer version: "new K V" sets like "set"; older ones halt on it
	restores int
}

func newKV() *kvSM { return &kvSM{data: map[string]string{}} }

func setCmd(k, v string) []byte { return []byte("set " + k + " " + v) }

// Apply understands "set K V"; "new K V" is a command only a newer version
// (knowsNew) knows, which halts an older node; anything else is a semantic
// failure reported in the result.
func (s *kvSM) Apply(index, _ uint64, cmd []byte) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.HasPrefix(string(cmd), "new ") && !s.knowsNew {
		return nil, fmt.Errorf("unknown command %q", cmd)
	}
	s.applied = append(s.applied, index)
	parts := strings.SplitN(string(cmd), " ", 3)
	if len(parts) != 3 || (parts[0] != "set" && parts[0] != "new") {
		return fmt.Errorf("bad command %q", cmd), nil
	}
	prev := s.data[parts[1]]
	s.data[parts[1]] = parts[2]
	return prev, nil
}

type kvSnap map[string]string

func (m kvSnap) WriteSnapshot(w io.Writer) error {
	return json.NewEncoder(w).Encode(map[string]string(m))
}

func (s *kvSM) Snapshot() (SnapshotWriter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(kvSnap, len(s.data))
	for k, v := range s.data {
		c[k] = v
	}
	return c, nil
}

func (s *kvSM) Restore(r io.Reader) error {
	m := map[string]string{}
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return fmt.Errorf("decode kv snapshot: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data = m
	s.restores++
	return nil
}

func (s *kvSM) get(k string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[k]
	return v, ok
}

func (s *kvSM) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.data)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("RAFTNODE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// fastConfig is a config with timeouts short enough for loopback tests.
func fastConfig(t testing.TB, id, dir string) Config {
	cfg := DefaultConfig()
	cfg.NodeID = id
	cfg.DataDir = dir
	cfg.BindAddr = "127.0.0.1:0"
	cfg.HeartbeatTimeout = 200 * time.Millisecond
	cfg.ElectionTimeout = 200 * time.Millisecond
	cfg.LeaderLeaseTimeout = 100 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.ApplyTimeout = 5 * time.Second
	cfg.Logger = testLogger(t)
	return cfg
}

func mustNew(t testing.TB, cfg Config, sm StateMachine) *Node {
	t.Helper()
	n, err := New(cfg, sm)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeID, err)
	}
	return n
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitLeader(t testing.TB, n *Node) {
	t.Helper()
	waitFor(t, 10*time.Second, n.ID()+" to become leader", n.IsLeader)
}
