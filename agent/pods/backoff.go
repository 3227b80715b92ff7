package pods

import (
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// Kubelet's back-off: restarts of a crashing container and pulls of a
// failing image wait 10 s, doubling to 5 min.
const (
	backoffInitial = 10 * time.Second
	backoffMax     = 5 * time.Minute
)

// backoff keeps kubelet's per-key back-off. The first retry after a failure
// is immediate; each further failure within the window doubles the wait,
// from initial to max. A failure more than 2*max after the previous one
// (a container that ran ten minutes) starts over.
type backoff struct {
	mu      sync.Mutex
	initial time.Duration
	max     time.Duration
	clock   clockwork.Clock
	perKey  map[string]*backoffEntry
}

type backoffEntry struct {
	delay      time.Duration
	lastUpdate time.Time
}

func newBackoff(clock clockwork.Clock, initial, max time.Duration) *backoff {
	return &backoff{initial: initial, max: max, clock: clock, perKey: map[string]*backoffEntry{}}
}

// wait returns how long a retry of key must still wait after a failure at
// failedAt; zero when it may go now.
func (b *backoff) wait(key string, failedAt time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.perKey[key]
	if !ok || failedAt.Sub(e.lastUpdate) > 2*b.max {
		return 0
	}
	if left := e.delay - b.clock.Since(failedAt); left > 0 {
		return left
	}
	return 0
}

// waitSinceUpdate is how long a retry of key must still wait after its
// last recorded failure.
func (b *backoff) waitSinceUpdate(key string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.perKey[key]
	if !ok {
		return 0
	}
	if left := e.delay - b.clock.Since(e.lastUpdate); left > 0 {
		return left
	}
	return 0
}

// next records a retry after a failure at failedAt, growing the delay for
// the following one.
func (b *backoff) next(key string, failedAt time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.perKey[key]
	if !ok || failedAt.Sub(e.lastUpdate) > 2*b.max {
		b.perKey[key] = &backoffEntry{delay: b.initial, lastUpdate: failedAt}
		return
	}
	e.delay = min(2*e.delay, b.max)
	e.lastUpdate = failedAt
}

// delay is key's current back-off, for messages.
func (b *backoff) delay(key string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.perKey[key]; ok {
		return e.delay
	}
	return b.initial
}

// forget drops every key with the given prefix (a pod's).
func (b *backoff) forget(prefix string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.perKey {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			delete(b.perKey, k)
		}
	}
}
