package sdk

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	testingclock "k8s.io/utils/clock/testing"
)

var errStale = errors.New("cache not caught up")

// TestProcessNext drives the worker loop one key at a time on a fake
// clock: which results retry the key, which forget it, and at which level
// each failure is logged.
func TestProcessNext(t *testing.T) {
	conflict := apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "p", errors.New("changed"))
	boom := errors.New("boom")
	for _, tc := range []struct {
		name      string
		opts      []WorkerOption
		results   []error // one per call; nil ends the key
		wantCalls int
		wantLog   []string // substrings of the log, in order
	}{
		{name: "success forgets", results: []error{nil}, wantCalls: 1},
		{name: "failures retry until success", results: []error{boom, boom, nil}, wantCalls: 3,
			wantLog: []string{`level=WARN msg="reconcile failed; will retry" key=k error=boom retries=0`, "retries=1"}},
		{name: "max retries drop the key", opts: []WorkerOption{WithMaxRetries(2)},
			results: []error{boom, boom, boom, nil}, wantCalls: 3,
			wantLog: []string{"will retry", "will retry", `level=WARN msg="reconcile failed too often; dropping the key until its next change"`}},
		{name: "terminal error is not retried", results: []error{TerminalError(boom), nil}, wantCalls: 1,
			wantLog: []string{`level=WARN msg="reconcile failed; not retrying" key=k error="terminal error: boom"`}},
		{name: "wrapped terminal error is not retried", results: []error{errors.Join(errors.New("sync"), TerminalError(boom)), nil}, wantCalls: 1},
		{name: "conflicts are expected", results: []error{conflict, nil}, wantCalls: 2,
			wantLog: []string{`level=DEBUG msg="reconcile failed; will retry"`}},
		{name: "caller's expected errors", opts: []WorkerOption{WithExpectedErrors(func(err error) bool { return errors.Is(err, errStale) })},
			results: []error{errStale, boom, nil}, wantCalls: 3,
			wantLog: []string{`level=DEBUG msg="reconcile failed; will retry" key=k error="cache not caught up"`, `level=WARN`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := testingclock.NewFakeClock(time.Unix(0, 0))
			q := NewQueue[string]("test", WithClock(clk))
			defer q.ShutDown()
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug,
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				}}))
			calls := 0
			reconcile := func(context.Context, string) (Result, error) {
				calls++
				return Result{}, tc.results[calls-1]
			}
			o := workerOptions{}
			for _, opt := range tc.opts {
				opt(&o)
			}
			q.Add("k")
			for {
				processNext(context.Background(), q, reconcile, logger, &o)
				if q.NumRequeues("k") == 0 {
					break // forgotten: only a new event brings it back
				}
				clk.Step(time.Hour) // past any backoff
				waitLen(t, q.Len, 1)
			}
			if calls != tc.wantCalls {
				t.Errorf("reconciled %d times, want %d", calls, tc.wantCalls)
			}
			if q.Len() != 0 {
				t.Errorf("%d keys queued after the key was forgotten", q.Len())
			}
			rest := logs.String()
			for _, want := range tc.wantLog {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("log lacks %q (in order); log:\n%s", want, logs.String())
				}
				rest = rest[i+len(want):]
			}
		})
	}
}

// waitLen waits until the queue holds n keys: the delaying queue moves a
// key whose time came on its own goroutine.
func waitLen(t *testing.T, length func() int, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for length() != n {
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d keys, want %d", length(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRequeueAfterFollowsTheClock(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(0, 0))
	q := NewQueue[string]("test", WithClock(clk))
	defer q.ShutDown()
	q.Add("k")
	processNext(context.Background(), q, func(context.Context, string) (Result, error) {
		return Result{RequeueAfter: time.Minute}, nil
	}, slog.New(slog.DiscardHandler), &workerOptions{})
	if q.NumRequeues("k") != 0 || q.Len() != 0 {
		t.Fatalf("after RequeueAfter: %d requeues, %d queued; want 0, 0", q.NumRequeues("k"), q.Len())
	}
	clk.Step(time.Minute)
	waitLen(t, q.Len, 1)
}

func TestCancelledContextForgetsTheKey(t *testing.T) {
	q := NewQueue[string]("test")
	defer q.ShutDown()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q.Add("k")
	processNext(ctx, q, func(ctx context.Context, _ string) (Result, error) { return Result{}, ctx.Err() },
		slog.New(slog.DiscardHandler), &workerOptions{})
	if q.NumRequeues("k") != 0 || q.Len() != 0 {
		t.Errorf("a key failing because the loop stops was kept: %d requeues, %d queued", q.NumRequeues("k"), q.Len())
	}
}

func TestBucketLimiterUsesTheClock(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(0, 0))
	q := NewQueue[int]("test", WithClock(clk))
	defer q.ShutDown()
	// The burst of 100 goes after the first backoff (5 ms); the 101st waits
	// for its token, a tenth of a second of the fake clock (10 keys/s).
	for i := range burst + 1 {
		q.AddRateLimited(i)
	}
	clk.Step(baseBackoff)
	waitLen(t, q.Len, burst)
	clk.Step(100*time.Millisecond - baseBackoff)
	waitLen(t, q.Len, burst+1)
	// Ten seconds of the fake clock refill the bucket: new keys wait only
	// for their first backoff. (A bucket on the wall clock would make them
	// wait for tokens the fake clock never brings.)
	clk.Step(10 * time.Second)
	for i := range 50 {
		q.AddRateLimited(1000 + i)
	}
	clk.Step(baseBackoff)
	waitLen(t, q.Len, burst+1+50)
}

func TestTerminalError(t *testing.T) {
	if TerminalError(nil) != nil {
		t.Error("TerminalError(nil) is not nil")
	}
	base := errors.New("namespace terminating")
	err := TerminalError(base)
	if !IsTerminal(err) || !errors.Is(err, base) || IsTerminal(base) {
		t.Errorf("IsTerminal(%v) = %v, errors.Is = %v, IsTerminal(plain) = %v", err, IsTerminal(err), errors.Is(err, base), IsTerminal(base))
	}
}
