package sdk

import (
	"context"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Result tells the worker loop what to do with a key after a successful
// reconcile: forget it, or look at it again after RequeueAfter (for waits
// that no watch event will end, like a grace period running out).
type Result struct {
	RequeueAfter time.Duration
}

// ReconcileFunc reads the world for key, makes one step towards the desired
// state and returns. It must be idempotent: the same key may be reconciled
// any number of times, and a failed reconcile is retried with backoff.
type ReconcileFunc[K comparable] func(ctx context.Context, key K) (Result, error)

// NewQueue returns the rate-limited work queue a controller's event handlers
// add keys to: a key is held at most once however often it is added, and
// never handed to two workers at the same time.
func NewQueue[K comparable](name string) workqueue.TypedRateLimitingInterface[K] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[K](),
		workqueue.TypedRateLimitingQueueConfig[K]{Name: name},
	)
}

// RunWorkers runs n workers that take keys from q and reconcile them, until
// ctx is cancelled; it then shuts q down and returns once every worker has
// finished its current key. Errors are logged and the key retried with the
// queue's backoff; conflicts and already-existing objects (someone else,
// or the controller's own write its cache has not shown yet, got there
// first) are expected and logged at debug level only.
func RunWorkers[K comparable](ctx context.Context, q workqueue.TypedRateLimitingInterface[K], n int,
	reconcile ReconcileFunc[K], logger *slog.Logger) {
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Go(func() {
			for processNext(ctx, q, reconcile, logger) {
			}
		})
	}
	<-ctx.Done()
	q.ShutDown()
	wg.Wait()
}

func processNext[K comparable](ctx context.Context, q workqueue.TypedRateLimitingInterface[K],
	reconcile ReconcileFunc[K], logger *slog.Logger) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	res, err := reconcile(ctx, key)
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return true
		}
		level := slog.LevelWarn
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			level = slog.LevelDebug // someone (or our own last write) got there first
		}
		logger.Log(ctx, level, "reconcile failed; will retry", "key", key, "error", err,
			"retries", q.NumRequeues(key))
		q.AddRateLimited(key)
	case res.RequeueAfter > 0:
		q.Forget(key)
		q.AddAfter(key, res.RequeueAfter)
	default:
		q.Forget(key)
	}
	return true
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
