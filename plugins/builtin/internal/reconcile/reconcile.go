// Package reconcile runs a controller's workers: object keys
// (namespace/name) from a rate-limited work queue are handed to a
// reconcile func, never two at once for the same key; a failed key is
// retried with exponential backoff.
package reconcile

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
)

// Func brings the object named key (namespace/name) to its desired state,
// reading the world afresh each time. An error retries the key later.
type Func func(ctx context.Context, key string) error

// Options configure a Loop.
type Options struct {
	// Name names the queue in logs.
	Name string
	// MaxRetries drops a key after this many consecutive failures (it
	// comes back with its object's next event); 0 retries forever.
	MaxRetries int
	// Permanent, when set, reports errors that retrying cannot fix: the key
	// is dropped at once.
	Permanent func(error) bool
	// Expected, when set, reports errors that are part of normal operation
	// (a cache not caught up yet): retried like others, logged at debug.
	Expected func(error) bool
	// Logger receives one line per failed reconcile.
	Logger *slog.Logger
}

// Loop is a work queue and the workers that drain it.
type Loop struct {
	opts  Options
	queue workqueue.TypedRateLimitingInterface[string]
}

// New returns a Loop with client-go's controller rate limiter: per-key
// exponential backoff from 5 ms to 1000 s, 10 retries/s overall.
func New(opts Options) *Loop {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Loop{
		opts: opts,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: opts.Name},
		),
	}
}

// Add queues key now.
func (l *Loop) Add(key string) { l.queue.Add(key) }

// AddAfter queues key after d.
func (l *Loop) AddAfter(key string, d time.Duration) { l.queue.AddAfter(key, d) }

// AddRateLimited queues key after its backoff.
func (l *Loop) AddRateLimited(key string) { l.queue.AddRateLimited(key) }

// Len is the number of keys waiting.
func (l *Loop) Len() int { return l.queue.Len() }

// Run runs workers goroutines calling fn until ctx is cancelled, then shuts
// the queue down and waits for the workers to finish their current key.
func (l *Loop) Run(ctx context.Context, workers int, fn Func) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for l.next(ctx, fn) {
			}
		})
	}
	<-ctx.Done()
	l.queue.ShutDown()
	wg.Wait()
}

func (l *Loop) next(ctx context.Context, fn Func) bool {
	key, quit := l.queue.Get()
	if quit {
		return false
	}
	defer l.queue.Done(key)
	err := fn(ctx, key)
	switch {
	case err == nil:
		l.queue.Forget(key)
	case ctx.Err() != nil:
		// Shutting down: the next leader's controller starts from scratch.
		l.queue.Forget(key)
	case l.opts.Permanent != nil && l.opts.Permanent(err):
		l.opts.Logger.Info("reconcile failed; not retrying", "queue", l.opts.Name, "key", key, "error", err)
		l.queue.Forget(key)
	case l.opts.MaxRetries > 0 && l.queue.NumRequeues(key) >= l.opts.MaxRetries:
		l.opts.Logger.Warn("reconcile failed too often; dropping until the next change", "queue", l.opts.Name, "key", key, "error", err)
		l.queue.Forget(key)
	case l.opts.Expected != nil && l.opts.Expected(err):
		l.opts.Logger.Debug("reconcile deferred; retrying", "queue", l.opts.Name, "key", key, "reason", err)
		l.queue.AddRateLimited(key)
	default:
		l.opts.Logger.Info("reconcile failed; retrying", "queue", l.opts.Name, "key", key, "error", err)
		l.queue.AddRateLimited(key)
	}
	return true
}
