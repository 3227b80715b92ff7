package host

import (
	"context"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// startGate bounds how many plugins are starting at once. A new leader
// would otherwise launch every plugin in the same instant, and their
// handshakes, RBAC set-up and first lists compete for the CPU that the
// leader's raft heartbeats need.
type startGate struct {
	slots chan struct{}
	clock clockwork.Clock
	hold  time.Duration
}

func newStartGate(n int, clock clockwork.Clock, hold time.Duration) *startGate {
	return &startGate{slots: make(chan struct{}, n), clock: clock, hold: hold}
}

// startTurn is one plugin's turn; release gives it back, once.
type startTurn struct {
	once  sync.Once
	gate  *startGate
	timer clockwork.Timer
}

// acquire waits for a turn; it fails only when ctx ends first. The turn is
// given back by release or, at the latest, after the gate's hold.
func (g *startGate) acquire(ctx context.Context) (*startTurn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	t := &startTurn{gate: g}
	t.timer = g.clock.AfterFunc(g.hold, t.release)
	return t, nil
}

// release gives the turn back; later calls (and a nil turn) do nothing.
func (t *startTurn) release() {
	if t == nil {
		return
	}
	t.once.Do(func() {
		t.timer.Stop()
		<-t.gate.slots
	})
}
