package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// Result tells the worker loop what to do with a key after a successful
// reconcile: forget it, or look at it again after RequeueAfter (for waits
// that no watch event will end, like a grace period running out).
type Result struct {
	RequeueAfter time.Duration
}

// ReconcileFunc reads the world for key, makes one step towards the desired
// state and returns. It must be idempotent: the same key may be reconciled
// any number of times, and a failed reconcile is retried with backoff
// unless the error is a TerminalError.
type ReconcileFunc[K comparable] func(ctx context.Context, key K) (Result, error)

// QueueOption configures NewQueue.
type QueueOption func(*queueOptions)

type queueOptions struct {
	clock clock.WithTicker
}

// WithClock makes the queue's delays (AddAfter, backoff) and its overall
// rate limit follow clk instead of the wall clock, so a test with a fake
// clock decides when a delayed key comes back.
func WithClock(clk clock.WithTicker) QueueOption {
	return func(o *queueOptions) { o.clock = clk }
}

// The controller rate limiter's figures, as client-go's default: per-key
// exponential backoff from 5 ms to 1000 s, 10 keys/s overall in bursts of 100.
const (
	baseBackoff = 5 * time.Millisecond
	maxBackoff  = 1000 * time.Second
	overallQPS  = 10
	burst       = 100
)

// NewQueue returns the rate-limited work queue a controller's event handlers
// add keys to: a key is held at most once however often it is added, and
// never handed to two workers at the same time.
func NewQueue[K comparable](name string, opts ...QueueOption) workqueue.TypedRateLimitingInterface[K] {
	o := queueOptions{clock: clock.RealClock{}}
	for _, opt := range opts {
		opt(&o)
	}
	limiter := workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[K](baseBackoff, maxBackoff),
		&bucketLimiter[K]{limiter: rate.NewLimiter(overallQPS, burst), clock: o.clock},
	)
	return workqueue.NewTypedRateLimitingQueueWithConfig(limiter,
		workqueue.TypedRateLimitingQueueConfig[K]{Name: name, Clock: o.clock})
}

// bucketLimiter is client-go's overall token bucket, reading the time from
// an injected clock (client-go's reads the wall clock).
type bucketLimiter[K comparable] struct {
	limiter *rate.Limiter
	clock   clock.PassiveClock
}

func (b *bucketLimiter[K]) When(K) time.Duration {
	now := b.clock.Now()
	return b.limiter.ReserveN(now, 1).DelayFrom(now)
}

func (b *bucketLimiter[K]) NumRequeues(K) int { return 0 }
func (b *bucketLimiter[K]) Forget(K)          {}

// WorkerOption configures RunWorkers.
type WorkerOption func(*workerOptions)

type workerOptions struct {
	maxRetries int
	expected   func(error) bool
}

// WithMaxRetries drops a key after n consecutive failed reconciles (the
// first try and n retries); it comes back with its object's next event.
// Zero, the default, retries for ever.
func WithMaxRetries(n int) WorkerOption {
	return func(o *workerOptions) { o.maxRetries = n }
}

// WithExpectedErrors marks the errors that are part of normal operation
// (a cache not caught up yet): they are retried like any other but logged
// at debug level. Conflicts and already-existing objects always are.
func WithExpectedErrors(expected func(error) bool) WorkerOption {
	return func(o *workerOptions) { o.expected = expected }
}

// terminalError is an error that retrying cannot fix.
type terminalError struct{ err error }

func (e *terminalError) Error() string { return "terminal error: " + e.err.Error() }
func (e *terminalError) Unwrap() error { return e.err }

// TerminalError marks err as one that retrying cannot fix (a namespace
// being deleted, an object that can never be valid): RunWorkers logs it and
// forgets the key until its object's next event, as controller-runtime's
// reconcile.TerminalError. TerminalError(nil) is nil.
func TerminalError(err error) error {
	if err == nil {
		return nil
	}
	return &terminalError{err: err}
}

// IsTerminal reports whether err, or an error it wraps, is a TerminalError.
func IsTerminal(err error) bool {
	var t *terminalError
	return errors.As(err, &t)
}

// RunWorkers runs n workers that take keys from q and reconcile them, until
// ctx is cancelled; it then shuts q down and returns once every worker has
// finished its current key. A failed key is retried with the queue's
// backoff, up to WithMaxRetries; a TerminalError is not retried. Failures
// are logged at warning level, except expected ones (conflicts, objects
// that already exist: someone else, or the controller's own write its cache
// has not shown yet, got there first; and WithExpectedErrors) at debug.
func RunWorkers[K comparable](ctx context.Context, q workqueue.TypedRateLimitingInterface[K], n int,
	reconcile ReconcileFunc[K], logger *slog.Logger, opts ...WorkerOption) {
	var o workerOptions
	for _, opt := range opts {
		opt(&o)
	}
	if logger == nil {
		logger = slog.Default()
	}
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Go(func() {
			for processNext(ctx, q, reconcile, logger, &o) {
			}
		})
	}
	<-ctx.Done()
	q.ShutDown()
	wg.Wait()
}

func processNext[K comparable](ctx context.Context, q workqueue.TypedRateLimitingInterface[K],
	reconcile ReconcileFunc[K], logger *slog.Logger, o *workerOptions) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	res, err := reconcile(ctx, key)
	switch {
	case err != nil:
		handleError(ctx, q, key, err, logger, o)
	case res.RequeueAfter > 0:
		q.Forget(key)
		q.AddAfter(key, res.RequeueAfter)
	default:
		q.Forget(key)
	}
	return true
}

// handleError decides a failed key's fate: retried with backoff, or
// forgotten until its next event.
func handleError[K comparable](ctx context.Context, q workqueue.TypedRateLimitingInterface[K], key K,
	err error, logger *slog.Logger, o *workerOptions) {
	switch {
	case ctx.Err() != nil:
		// Shutting down: the next leader's controller starts from scratch.
		q.Forget(key)
	case IsTerminal(err):
		logger.Warn("reconcile failed; not retrying", "key", key, "error", err)
		q.Forget(key)
	case o.maxRetries > 0 && q.NumRequeues(key) >= o.maxRetries:
		logger.Warn("reconcile failed too often; dropping the key until its next change", "key", key,
			"error", err, "retries", q.NumRequeues(key))
		q.Forget(key)
	default:
		level := slog.LevelWarn
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || (o.expected != nil && o.expected(err)) {
			level = slog.LevelDebug
		}
		logger.Log(ctx, level, "reconcile failed; will retry", "key", key, "error", err,
			"retries", q.NumRequeues(key))
		q.AddRateLimited(key)
	}
}

// EnqueueObjects is an informer event handler that adds the
// namespace/name key of every added, updated or deleted object to q.
func EnqueueObjects(q workqueue.TypedInterface[string]) cache.ResourceEventHandlerFuncs {
	add := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			q.Add(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, obj any) { add(obj) }, DeleteFunc: add}
}

// ReconcileObjects is the whole loop of a controller that reconciles the
// objects of one informer by key: every added, updated or deleted object's
// namespace/name goes on a new queue named name, and the returned run
// works them off with n workers (RunWorkers) until its ctx is cancelled.
// Register it before the informer factory starts.
func ReconcileObjects(name string, inf cache.SharedInformer, n int, reconcile ReconcileFunc[string],
	logger *slog.Logger, opts ...WorkerOption) (run func(context.Context) error, err error) {
	q := NewQueue[string](name)
	if _, err := inf.AddEventHandler(EnqueueObjects(q)); err != nil {
		return nil, fmt.Errorf("%s: watching its objects: %w", name, err)
	}
	return func(ctx context.Context) error {
		RunWorkers(ctx, q, n, reconcile, logger, opts...)
		return nil
	}, nil
}
