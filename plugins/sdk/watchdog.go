package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// watchdog ends the plugin process when its host is gone. go-plugin leaves
// a plugin running when the host is SIGKILLed; Pdeathsig (set by the host on
// Linux) covers most cases, this covers the rest: the parent PID changing
// (re-parented to init or a subreaper) or the host's Run stream breaking
// without a Stop.
type watchdog struct {
	ppid     int
	getppid  func() int
	interval time.Duration
	logger   *slog.Logger
	exit     func()
	once     sync.Once
}

func (w *watchdog) run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if p := w.getppid(); p != w.ppid {
				w.hostLost(fmt.Sprintf("parent process changed from %d to %d", w.ppid, p))
				return
			}
		}
	}
}

// hostLost exits the process once, whatever reported it first.
func (w *watchdog) hostLost(reason string) {
	w.once.Do(func() {
		w.logger.Error("plugin host is gone; exiting", "reason", reason)
		w.exit()
	})
}
