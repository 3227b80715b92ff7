package kvserver

import (
	"context"
	"sync"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// The memory a watch stream holds is what it has queued and not yet handed to
// gRPC. Everything else a watcher needs is its cursor into the fsm's history,
// which costs nothing: a watcher that cannot queue more waits without holding
// a view, as etcd moves a watcher whose channel is full to its unsynced set.
// So a client that stops reading holds at most its watchers' caps, and once
// compaction passes a stalled watcher it is canceled with the compacted
// error, as etcd cancels an unsynced watcher that compaction overtook.

// maxControlQueued bounds the control responses (created, canceled,
// progress) waiting on one stream: past it the stream stops reading requests,
// as etcd's control channel blocks, so a client that creates watches without
// reading cannot grow the queue.
const maxControlQueued = 256

// WatchQueueStats is the server-wide accounting of watch responses queued
// and not yet written to their streams, and of watchers past their cap.
type WatchQueueStats struct {
	// Events and Bytes are queued on every stream together.
	Events, Bytes int64
	// Stalled is the number of watchers waiting for their queue to drain.
	Stalled int64
	// Compacted counts watches canceled because history they still needed
	// was compacted (they started, or fell, behind the retained window).
	Compacted int64
}

// watchCounters holds the server-wide WatchQueueStats.
type watchCounters struct {
	events, bytes, stalled, compacted atomic.Int64
}

func (c *watchCounters) snapshot() WatchQueueStats {
	return WatchQueueStats{Events: c.events.Load(), Bytes: c.bytes.Load(), Stalled: c.stalled.Load(), Compacted: c.compacted.Load()}
}

// queued is one response waiting for the sender and what it accounts for.
type queued struct {
	resp          *pb.WatchResponse
	w             *watcher // nil for a control response
	events, bytes int64
}

// outbox is one stream's queue of responses for its sender. Pushing never
// blocks; admission (room) is what bounds it.
type outbox struct {
	limits   watchLimits
	counters *watchCounters

	mu            sync.Mutex
	items         []queued
	control       int           // control responses in items
	events, bytes int64         // stream totals, until Send returns
	ready         chan struct{} // holds a token while items is not empty
	drained       chan struct{} // closed and replaced whenever Send returns
}

// watchLimits are the caps of Config, resolved.
type watchLimits struct {
	watchEvents int64
	watchBytes  int64
	streamBytes int64
}

func newOutbox(l watchLimits, c *watchCounters) *outbox {
	return &outbox{limits: l, counters: c, ready: make(chan struct{}, 1), drained: make(chan struct{})}
}

// eventBytes estimates the memory an event pins while queued: its key and
// value (and the previous ones when asked for) plus the fixed overhead of
// the KeyValue and Event structs.
func eventBytes(e *mvccpb.Event) int64 {
	const overhead = 128
	n := int64(overhead + len(e.Kv.Key) + len(e.Kv.Value))
	if e.PrevKv != nil {
		n += int64(overhead + len(e.PrevKv.Key) + len(e.PrevKv.Value))
	}
	return n
}

// push queues resp for w (nil: a control response, always admitted).
func (o *outbox) push(resp *pb.WatchResponse, w *watcher) {
	q := queued{resp: resp, w: w, events: int64(len(resp.Events))}
	for _, e := range resp.Events {
		q.bytes += eventBytes(e)
	}
	o.mu.Lock()
	o.items = append(o.items, q)
	if w == nil {
		o.control++
	} else {
		w.qEvents += q.events
		w.qBytes += q.bytes
	}
	o.events += q.events
	o.bytes += q.bytes
	o.mu.Unlock()
	o.counters.events.Add(q.events)
	o.counters.bytes.Add(q.bytes)
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

// room returns how many more events and bytes w may queue (both > 0), or
// a channel closed when the stream next drains if it may queue none. A
// batch may pass what is left by one revision's events only.
func (o *outbox) room(w *watcher) (events, bytes int64, drained <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	events = o.limits.watchEvents - w.qEvents
	bytes = min(o.limits.watchBytes-w.qBytes, o.limits.streamBytes-o.bytes)
	if events <= 0 || bytes <= 0 {
		return 0, 0, o.drained
	}
	return events, bytes, nil
}

// controlRoom waits until the stream has room for more control responses.
func (o *outbox) controlRoom(ctx context.Context) bool {
	for {
		o.mu.Lock()
		ok, drained := o.control < maxControlQueued, o.drained
		o.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-drained:
		case <-ctx.Done():
			return false
		}
	}
}

// pop waits for the oldest response; it stays accounted until done.
func (o *outbox) pop(ctx context.Context) (queued, bool) {
	for {
		o.mu.Lock()
		if len(o.items) > 0 {
			q := o.items[0]
			o.items[0] = queued{}
			o.items = o.items[1:]
			if len(o.items) > 0 {
				select {
				case o.ready <- struct{}{}:
				default:
				}
			}
			o.mu.Unlock()
			return q, true
		}
		o.mu.Unlock()
		select {
		case <-o.ready:
		case <-ctx.Done():
			return queued{}, false
		}
	}
}

// done releases what q accounted for once gRPC has taken it.
func (o *outbox) done(q queued) {
	o.mu.Lock()
	if q.w == nil {
		o.control--
	} else {
		q.w.qEvents -= q.events
		q.w.qBytes -= q.bytes
	}
	o.events -= q.events
	o.bytes -= q.bytes
	close(o.drained)
	o.drained = make(chan struct{})
	o.mu.Unlock()
	o.counters.events.Add(-q.events)
	o.counters.bytes.Add(-q.bytes)
}

// close releases everything still queued when the stream ends.
func (o *outbox) close() {
	o.mu.Lock()
	items := o.items
	o.items = nil
	o.mu.Unlock()
	for _, q := range items {
		o.done(q)
	}
}
