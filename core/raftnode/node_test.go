package raftnode

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

func TestSingleNodeApplyAndRestartReplay(t *testing.T) {
	dir := t.TempDir()
	cfg := fastConfig(t, "n1", dir)
	cfg.Bootstrap = true
	sm := newKV()
	n := mustNew(t, cfg, sm)
	waitLeader(t, n)
	ctx := ctxT(t, 10*time.Second)

	var last uint64
	for i := range 20 {
		res, idx, err := n.Apply(ctx, setCmd("k", fmt.Sprint(i)))
		if err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
		if idx <= last {
			t.Fatalf("Apply %d: index %d not above previous %d", i, idx, last)
		}
		last = idx
		want := ""
		if i > 0 {
			want = fmt.Sprint(i - 1)
		}
		if res != want {
			t.Fatalf("Apply %d: result %v, want previous value %q", i, res, want)
		}
	}
	if got := n.AppliedIndex(); got < last {
		t.Fatalf("AppliedIndex = %d after apply at %d", got, last)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	// Restart on the same DataDir with an empty state machine; Bootstrap
	// stays set and must be a no-op.
	sm2 := newKV()
	n2 := mustNew(t, cfg, sm2)
	defer n2.Shutdown()
	waitLeader(t, n2)
	idx, err := n2.LinearizableRead(ctx)
	if err != nil {
		t.Fatalf("LinearizableRead after restart: %v", err)
	}
	if idx < last {
		t.Fatalf("read index %d after restart is below last write %d", idx, last)
	}
	if v, _ := sm2.get("k"); v != "19" {
		t.Fatalf("after replay k = %q, want 19", v)
	}
	if got := len(sm2.applied); got != 20 {
		t.Fatalf("replay applied %d commands, want exactly 20 (no barrier/noop/config entries)", got)
	}
	if _, _, err := n2.Apply(ctx, setCmd("k", "after")); err != nil {
		t.Fatalf("Apply after restart: %v", err)
	}
}

func TestSnapshotRestoreAfterThreshold(t *testing.T) {
	dir := t.TempDir()
	cfg := fastConfig(t, "n1", dir)
	cfg.Bootstrap = true
	cfg.SnapshotThreshold = 16
	cfg.SnapshotInterval = 20 * time.Millisecond
	cfg.TrailingLogs = 4
	n := mustNew(t, cfg, newKV())
	waitLeader(t, n)
	ctx := ctxT(t, 10*time.Second)
	var last uint64
	for i := range 50 {
		_, idx, err := n.Apply(ctx, setCmd(fmt.Sprint("k", i), fmt.Sprint(i)))
		if err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
		last = idx
	}
	waitFor(t, 10*time.Second, "a snapshot to be taken", func() bool {
		return n.Stats()["last_snapshot_index"] != "0"
	})
	if err := n.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	sm := newKV()
	n2 := mustNew(t, cfg, sm)
	defer n2.Shutdown()
	if sm.restores != 1 {
		t.Fatalf("restart restored %d snapshots, want 1", sm.restores)
	}
	if n2.AppliedIndex() == 0 {
		t.Fatal("AppliedIndex is 0 after restoring a snapshot; want the snapshot's index")
	}
	waitLeader(t, n2)
	if err := n2.WaitApplied(ctx, last); err != nil {
		t.Fatalf("WaitApplied(%d): %v", last, err)
	}
	if got := sm.size(); got != 50 {
		t.Fatalf("state after snapshot+replay has %d keys, want 50", got)
	}
	if len(sm.applied) >= 50 {
		t.Fatalf("replayed %d commands; the snapshot should have covered most of them", len(sm.applied))
	}
}

func TestApplyOnShutdownNode(t *testing.T) {
	cfg := fastConfig(t, "n1", t.TempDir())
	cfg.Bootstrap = true
	n := mustNew(t, cfg, newKV())
	waitLeader(t, n)
	if err := n.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	ctx := ctxT(t, time.Second)
	if _, _, err := n.Apply(ctx, setCmd("a", "b")); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Apply after Shutdown: %v, want ErrShutdown", err)
	}
	if _, err := n.LinearizableRead(ctx); !errors.Is(err, ErrShutdown) {
		t.Fatalf("LinearizableRead after Shutdown: %v, want ErrShutdown", err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestApplyContextAlreadyDoneIsNotApplied(t *testing.T) {
	cfg := fastConfig(t, "n1", t.TempDir())
	cfg.Bootstrap = true
	n := mustNew(t, cfg, newKV())
	defer n.Shutdown()
	waitLeader(t, n)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := n.Apply(ctx, setCmd("a", "b"))
	if !errors.Is(err, ErrNotApplied) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Apply with cancelled ctx: %v, want ErrNotApplied (never proposed)", err)
	}
}

func TestSubscribeSeesLeadershipAndCloses(t *testing.T) {
	cfg := fastConfig(t, "n1", t.TempDir())
	cfg.Bootstrap = true
	n := mustNew(t, cfg, newKV())
	ch, cancel := n.Subscribe()
	defer cancel()
	deadline := time.After(10 * time.Second)
	for leader := false; !leader; {
		select {
		case ev := <-ch:
			leader = ev.IsLeader
			if leader && ev.Term == 0 {
				t.Fatalf("leader event with term 0: %+v", ev)
			}
		case <-deadline:
			t.Fatal("no IsLeader event within 10s")
		}
	}
	// A late subscriber gets the current state at once.
	late, cancelLate := n.Subscribe()
	if ev := <-late; !ev.IsLeader {
		t.Fatalf("late subscriber first event %+v, want IsLeader", ev)
	}
	cancelLate()
	if _, ok := <-late; ok {
		t.Fatal("channel still open after unsubscribe")
	}
	if err := n.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for range ch { // drains buffered events; must terminate because Shutdown closes it
	}
}

func TestShutdownLeaksNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := fastConfig(t, "n1", t.TempDir())
	cfg.Bootstrap = true
	n := mustNew(t, cfg, newKV())
	waitLeader(t, n)
	ctx := ctxT(t, 10*time.Second)
	for i := range 10 {
		if _, _, err := n.Apply(ctx, setCmd("k", fmt.Sprint(i))); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	if _, err := n.LinearizableRead(ctx); err != nil {
		t.Fatalf("LinearizableRead: %v", err)
	}
	_, cancel := n.Subscribe()
	defer cancel()
	if err := n.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Goroutines exit asynchronously after their channels close; allow a
	// settle period rather than asserting on timing.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d after Shutdown\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// TestReadIndexOnNonCommandEntry: when the newest committed entries never
// reach the state machine (a barrier here, also no-ops and configuration
// changes), LinearizableRead must still complete.
func TestReadIndexOnNonCommandEntry(t *testing.T) {
	cfg := fastConfig(t, "n1", t.TempDir())
	cfg.Bootstrap = true
	n := mustNew(t, cfg, newKV())
	defer n.Shutdown()
	waitLeader(t, n)
	ctx := ctxT(t, 10*time.Second)
	_, cmdIdx, err := n.Apply(ctx, setCmd("a", "1"))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := n.Raft().Barrier(0).Error(); err != nil {
		t.Fatalf("Barrier: %v", err)
	}
	idx, err := n.LinearizableRead(ctx)
	if err != nil {
		t.Fatalf("LinearizableRead with a barrier at the head of the log: %v", err)
	}
	if idx <= cmdIdx {
		t.Fatalf("read index %d, want the barrier's index above command %d", idx, cmdIdx)
	}

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.WaitApplied(short, idx+100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApplied on a future index: %v, want DeadlineExceeded", err)
	}
}
