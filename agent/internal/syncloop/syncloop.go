// Package syncloop runs a level-triggered sync function on change, no more
// often than a minimum interval and at least once per maximum interval: the
// shape of every node-local reconciler that rewrites a whole table (iptables
// rules, routes) from caches. Triggers that arrive while a sync waits or runs
// coalesce into one more sync.
package syncloop

import (
	"context"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
)

// Loop calls Sync when triggered. The zero value is not usable; use New.
type Loop struct {
	name    string
	sync    func(ctx context.Context) error
	min     time.Duration
	max     time.Duration
	clock   clockwork.Clock
	log     *slog.Logger
	trigger chan struct{}
}

// Options configure a Loop.
type Options struct {
	// Name appears in log lines.
	Name string
	// MinInterval is the least time between the starts of two syncs; a
	// burst of changes costs one sync per MinInterval.
	MinInterval time.Duration
	// MaxInterval is the most time between two syncs: a sync runs then even
	// without a trigger, which repairs changes made behind the loop's back.
	MaxInterval time.Duration
	Clock       clockwork.Clock // default: the real clock
	Logger      *slog.Logger    // default: slog.Default()
}

// New returns a loop calling sync. The first sync runs as soon as Run starts.
func New(sync func(ctx context.Context) error, o Options) *Loop {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxInterval <= 0 {
		o.MaxInterval = time.Hour
	}
	l := &Loop{name: o.Name, sync: sync, min: o.MinInterval, max: o.MaxInterval, clock: o.Clock,
		log: o.Logger, trigger: make(chan struct{}, 1)}
	l.trigger <- struct{}{}
	return l
}

// Trigger asks for a sync. It never blocks.
func (l *Loop) Trigger() {
	select {
	case l.trigger <- struct{}{}:
	default: // a sync is already pending
	}
}

// Run syncs until ctx is done. A failed sync is retried after
// MinInterval (at least a second), doubling up to MaxInterval while it
// keeps failing.
func (l *Loop) Run(ctx context.Context) {
	var lastStart time.Time
	retry := time.Duration(0)
	for {
		wait := l.max
		if retry > 0 {
			wait = retry
		}
		if !l.sleep(ctx, wait, l.trigger) {
			return
		}
		if !lastStart.IsZero() {
			if d := l.min - l.clock.Since(lastStart); d > 0 && !l.sleep(ctx, d, nil) {
				return
			}
		}
		// Changes that arrive from here on need another sync; the pending
		// trigger (if any) is consumed because this sync reads them too.
		select {
		case <-l.trigger:
		default:
		}
		lastStart = l.clock.Now()
		if err := l.sync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			retry = l.nextRetry(retry)
			l.log.Error("sync failed; retrying", "loop", l.name, "retryIn", retry, "err", err)
			continue
		}
		retry = 0
	}
}

// sleep waits for d, or for wake if it is not nil; false when ctx ended.
// The timer is stopped on return, so no stale timer outlives the wait.
func (l *Loop) sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := l.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
	case <-t.Chan():
	}
	return true
}

func (l *Loop) nextRetry(prev time.Duration) time.Duration {
	if prev == 0 {
		return max(l.min, time.Second)
	}
	return min(prev*2, l.max)
}
