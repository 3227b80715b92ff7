package syncloop

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// recorder counts syncs and lets the test wait for the n-th.
type recorder struct {
	mu    sync.Mutex
	times []time.Time
	fail  int // fail this many syncs first
	ch    chan struct{}
	clock clockwork.Clock
}

func (r *recorder) sync(context.Context) error {
	r.mu.Lock()
	r.times = append(r.times, r.clock.Now())
	failing := r.fail > 0
	if failing {
		r.fail--
	}
	r.mu.Unlock()
	r.ch <- struct{}{}
	if failing {
		return errors.New("boom")
	}
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.times)
}

func start(t *testing.T, fail int) (*Loop, *recorder, *clockwork.FakeClock) {
	t.Helper()
	clock := clockwork.NewFakeClock()
	r := &recorder{ch: make(chan struct{}, 100), clock: clock, fail: fail}
	l := New(r.sync, Options{Name: "test", MinInterval: time.Second, MaxInterval: time.Minute, Clock: clock})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return l, r, clock
}

func waitSync(t *testing.T, r *recorder) {
	t.Helper()
	select {
	case <-r.ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no sync happened")
	}
}

func TestFirstSyncRunsAtOnce(t *testing.T) {
	_, r, _ := start(t, 0)
	waitSync(t, r)
}

func TestTriggersCoalesceAndRespectMinInterval(t *testing.T) {
	l, r, clock := start(t, 0)
	waitSync(t, r)
	for range 10 {
		l.Trigger()
	}
	// The loop waits for the rest of the minimum interval.
	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	waitSync(t, r)
	// Ten triggers made exactly one more sync: the next one comes only
	// when the maximum interval passes.
	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if got := r.count(); got != 2 {
		t.Fatalf("syncs = %d, want 2 (ten triggers coalesce)", got)
	}
	r.mu.Lock()
	gap := r.times[1].Sub(r.times[0])
	r.mu.Unlock()
	if gap < time.Second {
		t.Fatalf("second sync %v after the first, want at least the minimum interval", gap)
	}
}

func TestMaxIntervalSyncsWithoutTrigger(t *testing.T) {
	_, r, clock := start(t, 0)
	waitSync(t, r)
	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	waitSync(t, r)
}

func TestFailedSyncIsRetried(t *testing.T) {
	_, r, clock := start(t, 2)
	waitSync(t, r) // fails
	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	waitSync(t, r) // fails again
	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second) // backoff doubled
	waitSync(t, r)                 // succeeds
	if got := r.count(); got != 3 {
		t.Fatalf("syncs = %d, want 3", got)
	}
}
