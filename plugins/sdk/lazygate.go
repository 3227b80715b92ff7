package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"k8s.io/utils/clock"
)

// gate runs active while count is above zero: it starts it when count
// becomes positive, and cancels it once count has stayed zero for linger.
// changed is signalled after every change of count.
type gate struct {
	what    string
	linger  time.Duration
	clock   clock.Clock
	count   func() int
	changed <-chan struct{}
	active  func(context.Context) error
	idle    func(message string)
	logger  *slog.Logger
}

// run returns nil when ctx ends, or active's result when it returns on its
// own (an error, or nil if it finished).
func (g *gate) run(ctx context.Context) error {
	for {
		if !g.waitPresent(ctx) {
			return nil
		}
		if done, err := g.runActive(ctx); done {
			return err
		}
		// The stopped caches are garbage now: hand their memory back.
		debug.FreeOSMemory()
	}
}

// waitPresent reports the plugin idle until count is positive; false when
// ctx ended first.
func (g *gate) waitPresent(ctx context.Context) bool {
	if g.count() > 0 {
		return true
	}
	g.idle(fmt.Sprintf("idle: no %s exist; caches start when one is created", g.what))
	for g.count() == 0 {
		select {
		case <-ctx.Done():
			return false
		case <-g.changed:
		}
	}
	return true
}

// runActive runs active until ctx ends or active returns (done: its
// result), or until count stayed zero for linger (not done: active was
// cancelled and has returned).
func (g *gate) runActive(ctx context.Context) (done bool, err error) {
	actx, stop := context.WithCancel(ctx)
	defer stop()
	result := make(chan error, 1)
	g.logger.Info("starting caches", "trigger", g.what, "count", g.count())
	go func() { result <- g.active(actx) }()
	var timer clock.Timer
	var expired <-chan time.Time
	rearm := func() {
		switch n := g.count(); {
		case n == 0 && timer == nil:
			timer = g.clock.NewTimer(g.linger)
			expired = timer.C()
		case n > 0 && timer != nil:
			timer.Stop()
			timer, expired = nil, nil
		}
	}
	rearm()
	for {
		select {
		case err := <-result:
			return true, err
		case <-g.changed:
			rearm()
		case <-expired:
			timer, expired = nil, nil
			if g.count() > 0 {
				continue
			}
			g.logger.Info("stopping caches", "trigger", g.what, "after", g.linger)
			stop()
			if err := <-result; err != nil && ctx.Err() == nil {
				return true, err
			}
			return ctx.Err() != nil, nil
		}
	}
}
