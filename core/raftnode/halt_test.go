package raftnode

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestUnknownCommandHaltsInsteadOfSkipping runs a cluster where one
// follower runs an older version that does not know a command type. When
// the newer leader commits one, the old follower stops applying (saying
// which entry, which version wrote it and which it runs), refuses reads and
// writes, and never applies what follows; the others go on. Restarted as
// the newer version on the same data dir, it replays the entry from the log
// and catches up: nothing was skipped.
func TestUnknownCommandHaltsInsteadOfSkipping(t *testing.T) {
	c := startCluster(t, 3, func(cfg *Config) { cfg.Version = "keelson v2" })
	ctx := ctxT(t, 30*time.Second)
	li := c.leader(t)
	old := (li + 1) % 3
	for i, sm := range c.sms {
		sm.mu.Lock()
		sm.knowsNew = i != old
		sm.mu.Unlock()
	}
	leader := c.nodes[li]
	if _, _, err := leader.Apply(ctx, setCmd("a", "1")); err != nil {
		t.Fatal(err)
	}
	_, newIndex, err := leader.Apply(ctx, []byte("new b 2"))
	if err != nil {
		t.Fatalf("the newer leader applies the new command: %v", err)
	}
	_, lastIndex, err := leader.Apply(ctx, setCmd("c", "3"))
	if err != nil {
		t.Fatal(err)
	}
	n := c.nodes[old]
	select {
	case <-n.Halted():
	case <-ctx.Done():
		t.Fatal("the old follower never halted")
	}
	herr := n.HaltErr()
	var he *HaltError
	if !errors.As(herr, &he) || he.Index != newIndex || he.Writer != "keelson v2" {
		t.Fatalf("halt error %#v, want index %d written by keelson v2", herr, newIndex)
	}
	for _, want := range []string{"written by keelson v2", "unknown command", "upgrade this server"} {
		if !strings.Contains(herr.Error(), want) {
			t.Errorf("halt error %q does not say %q", herr, want)
		}
	}
	if _, err := n.LinearizableRead(ctx); !errors.Is(err, ErrHalted) {
		t.Errorf("read on a halted node: %v, want ErrHalted", err)
	}
	if _, _, err := n.Apply(ctx, setCmd("d", "4")); !errors.Is(err, ErrHalted) {
		t.Errorf("write on a halted node: %v, want ErrHalted", err)
	}
	if n.AppliedIndex() >= newIndex {
		t.Errorf("applied index %d moved past the refused entry %d", n.AppliedIndex(), newIndex)
	}
	if _, ok := c.sms[old].get("c"); ok {
		t.Error("the old follower applied an entry after the one it refused")
	}
	if _, err := n.fsm.Snapshot(); !errors.Is(err, ErrHalted) {
		t.Errorf("snapshot of a halted node: %v, want ErrHalted", err)
	}

	// Upgrade: restart the same node on its data dir as the newer version.
	dir, id := n.cfg.DataDir, n.cfg.NodeID
	bind := n.Addr()
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(t, id, dir)
	cfg.BindAddr = bind
	cfg.Version = "keelson v2"
	sm := newKV()
	sm.knowsNew = true
	upgraded := mustNew(t, cfg, sm)
	t.Cleanup(func() { _ = upgraded.Shutdown() })
	if _, err := upgraded.LinearizableRead(ctx); err != nil {
		t.Fatalf("read after upgrade: %v", err)
	}
	if upgraded.AppliedIndex() < lastIndex {
		t.Fatalf("applied %d after upgrade, want at least %d", upgraded.AppliedIndex(), lastIndex)
	}
	for k, want := range map[string]string{"a": "1", "b": "2", "c": "3"} {
		if got, _ := sm.get(k); got != want {
			t.Errorf("after upgrade %s = %q, want %q", k, got, want)
		}
	}
}
