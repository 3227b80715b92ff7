package reconcile

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// counter records how often each key was reconciled and signals each call.
type counter struct {
	mu    sync.Mutex
	calls map[string]int
	seen  chan string
}

func newCounter() *counter { return &counter{calls: map[string]int{}, seen: make(chan string, 100)} }

func (c *counter) fn(err func(key string, n int) error) Func {
	return func(_ context.Context, key string) error {
		c.mu.Lock()
		c.calls[key]++
		n := c.calls[key]
		c.mu.Unlock()
		c.seen <- key
		return err(key, n)
	}
}

func (c *counter) waitCalls(t *testing.T, key string, n int) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		c.mu.Lock()
		got := c.calls[key]
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-c.seen:
		case <-deadline:
			t.Fatalf("%s reconciled %d times, want %d", key, got, n)
		}
	}
}

func TestRunRetriesFailuresAndStopsWithItsContext(t *testing.T) {
	l := New(Options{Name: "test", Logger: quiet})
	c := newCounter()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		l.Run(ctx, 2, c.fn(func(key string, n int) error {
			if key == "flaky" && n < 3 {
				return errors.New("try again")
			}
			return nil
		}))
		close(done)
	}()
	l.Add("ok")
	l.Add("flaky")
	c.waitCalls(t, "ok", 1)
	c.waitCalls(t, "flaky", 3)
	cancel()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func TestMaxRetriesAndPermanentErrorsDropTheKey(t *testing.T) {
	permanent := errors.New("namespace terminating")
	l := New(Options{Name: "test", Logger: quiet, MaxRetries: 2, Permanent: func(err error) bool { return errors.Is(err, permanent) }})
	c := newCounter()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx, 1, c.fn(func(key string, _ int) error {
		if key == "doomed" {
			return permanent
		}
		return errors.New("always")
	}))
	l.Add("doomed")
	l.Add("broken")
	c.waitCalls(t, "broken", 3) // the first try and 2 retries
	c.waitCalls(t, "doomed", 1)
	// Dropped keys come back only when added again.
	l.Add("doomed")
	c.waitCalls(t, "doomed", 2)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls["broken"] != 3 {
		t.Errorf("broken reconciled %d times, want 3", c.calls["broken"])
	}
}
