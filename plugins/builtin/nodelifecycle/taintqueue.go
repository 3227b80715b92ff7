package nodelifecycle

import (
	"maps"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// zoneQueue holds the nodes of one zone that wait for their NoExecute
// taint, first come first served, and the zone's eviction rate limiter:
// tainting a node evicts its pods, so the rate of tainting is the rate of
// eviction (upstream's RateLimitedTimedQueue, burst 1).
type zoneQueue struct {
	limiter *rate.Limiter // nil while the zone's rate is 0: nothing is tainted
	order   []string
}

// tainter is the zones' queues; the monitor pass fills them and the
// tainting pass drains them, each from its own goroutine.
type tainter struct {
	mu    sync.Mutex
	rate  float64 // a new zone's rate
	zones map[string]*zoneQueue
}

func newTainter(initialRate float64) *tainter {
	return &tainter{rate: initialRate, zones: map[string]*zoneQueue{}}
}

func (t *tainter) zone(name string) *zoneQueue {
	q, ok := t.zones[name]
	if !ok {
		q = &zoneQueue{}
		if t.rate > 0 {
			q.limiter = rate.NewLimiter(rate.Limit(t.rate), 1) // starts with a token, like upstream's bucket
		}
		t.zones[name] = q
	}
	return q
}

// add queues node in zone unless it is queued there already.
func (t *tainter) add(zone, node string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.zone(zone)
	if !slices.Contains(q.order, node) {
		q.order = append(q.order, node)
	}
}

// remove takes node out of zone's queue; it reports whether it was there.
func (t *tainter) remove(zone, node string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	q, ok := t.zones[zone]
	if !ok {
		return false
	}
	i := slices.Index(q.order, node)
	if i < 0 {
		return false
	}
	q.order = slices.Delete(q.order, i, i+1)
	return true
}

// queued lists zone's queue in order (tests, logs).
func (t *tainter) queued(zone string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if q, ok := t.zones[zone]; ok {
		return slices.Clone(q.order)
	}
	return nil
}

// setRate changes zone's eviction rate at now. Like upstream's SwapLimiter,
// a token the zone had is kept, and a zone that had none (or was stopped)
// starts without one.
func (t *tainter) setRate(zone string, qps float64, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.zone(zone)
	switch {
	case qps <= 0:
		q.limiter = nil
	case q.limiter == nil:
		q.limiter = rate.NewLimiter(rate.Limit(qps), 1)
		q.limiter.AllowN(now, 1) // drain the initial token
	default:
		q.limiter.SetLimitAt(now, rate.Limit(qps))
	}
}

// pass taints, zone by zone, the queued nodes the zone's rate allows at
// now. A queued node that no longer needs a taint (ready again, deleted)
// leaves the queue without using the zone's budget. taint returning an
// error leaves the node at the head of the queue, for the next pass.
func (t *tainter) pass(now time.Time, needs func(node string) bool, taint func(node string) error) {
	t.mu.Lock()
	zones := slices.Sorted(maps.Keys(t.zones))
	t.mu.Unlock()
	for _, zone := range zones {
		for {
			node, ok := t.head(zone)
			if !ok {
				break
			}
			if !needs(node) {
				t.remove(zone, node)
				continue
			}
			if !t.allow(zone, now) {
				break
			}
			if err := taint(node); err != nil {
				break
			}
			t.remove(zone, node)
		}
	}
}

func (t *tainter) head(zone string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.zones[zone]
	if q == nil || len(q.order) == 0 {
		return "", false
	}
	return q.order[0], true
}

func (t *tainter) allow(zone string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.zones[zone]
	return q != nil && q.limiter != nil && q.limiter.AllowN(now, 1)
}
