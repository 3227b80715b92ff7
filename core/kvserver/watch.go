package kvserver

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/keelson/keelson/fsm"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc"
)

// maxEventsPerResponse and maxResponseBytes bound one WatchResponse; a
// response never splits the events of one revision, as etcd.
const (
	maxEventsPerResponse = 1000
	maxResponseBytes     = 1 << 20
)

// Watch serves one bidirectional watch stream carrying many watchers.
//
// Each watcher is a cursor over the fsm's event history: it reads every event
// from its next revision up to the current view, queues them, and waits for
// the next apply. Reading from immutable history (instead of pushing events
// into per-watcher buffers) is what makes "in order, no gaps, no duplicates"
// hold by construction, also for a watcher that falls behind.
func (s *Server) Watch(stream grpc.BidiStreamingServer[pb.WatchRequest, pb.WatchResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	ws := &watchStream{
		s:        s,
		ctx:      ctx,
		ob:       newOutbox(s.watchLimits(), &s.watchCounters),
		watchers: make(map[int64]*watcher),
		updated:  make(chan struct{}),
	}
	defer ws.ob.close()
	sendErr := make(chan error, 1)
	go func() { sendErr <- ws.sendLoop(stream) }()
	recvErr := ws.recvLoop(stream)
	cancel()
	ws.wg.Wait()
	if errors.Is(recvErr, io.EOF) || errors.Is(recvErr, context.Canceled) {
		recvErr = nil
	}
	select {
	case err := <-sendErr:
		if recvErr == nil && !errors.Is(err, context.Canceled) {
			recvErr = err
		}
	default:
	}
	return recvErr
}

type watchStream struct {
	s   *Server
	ctx context.Context
	ob  *outbox
	wg  sync.WaitGroup

	// mu serialises queueing on ob with the bookkeeping progress
	// notifications depend on (watcher.sent, watcher.lastEvent).
	mu       sync.Mutex
	watchers map[int64]*watcher
	nextID   int64
	updated  chan struct{} // closed and replaced when a watcher advances
	progress bool          // a RequestProgress is waiting to be answered
}

type watcher struct {
	id             int64
	key, end       []byte
	prevKV         bool
	noPut, noDel   bool
	progressNotify bool
	cancel         context.CancelFunc
	done           chan struct{}

	// Guarded by watchStream.mu. sent: every event with revision <= sent has
	// been queued. lastEvent: the revision of the last event queued.
	sent, lastEvent int64
	// Guarded by outbox.mu: what this watcher has queued and gRPC has not
	// taken yet.
	qEvents, qBytes int64
}

func (ws *watchStream) sendLoop(stream grpc.BidiStreamingServer[pb.WatchRequest, pb.WatchResponse]) error {
	for {
		q, ok := ws.ob.pop(ws.ctx)
		if !ok {
			return ws.ctx.Err()
		}
		err := stream.Send(q.resp)
		ws.ob.done(q)
		if err != nil {
			return err
		}
	}
}

// queue hands a control response (no events) to the sender. Callers hold
// ws.mu when ordering matters relative to other watchers.
func (ws *watchStream) queue(resp *pb.WatchResponse) {
	ws.ob.push(resp, nil)
}

func (ws *watchStream) recvLoop(stream grpc.BidiStreamingServer[pb.WatchRequest, pb.WatchResponse]) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		if !ws.ob.controlRoom(ws.ctx) {
			return ws.ctx.Err()
		}
		switch r := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if r.CreateRequest != nil {
				ws.create(r.CreateRequest)
			}
		case *pb.WatchRequest_CancelRequest:
			if r.CancelRequest != nil {
				ws.cancelWatch(r.CancelRequest.WatchId)
			}
		case *pb.WatchRequest_ProgressRequest:
			if r.ProgressRequest != nil {
				ws.requestProgress()
			}
		}
	}
}

func (ws *watchStream) create(cr *pb.WatchCreateRequest) {
	key, end := cr.Key, cr.RangeEnd
	if len(key) == 0 {
		key = []byte{0}
	}
	if len(end) == 0 {
		end = nil
	}
	v := ws.s.store.View()
	rev := v.Rev()
	start := cr.StartRevision
	if start <= 0 {
		start = rev + 1
	}
	w := &watcher{key: key, end: end, prevKV: cr.PrevKv, progressNotify: cr.ProgressNotify, done: make(chan struct{}), sent: start - 1}
	for _, f := range cr.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDel = true
		}
	}

	ws.mu.Lock()
	defer ws.mu.Unlock()
	id := cr.WatchId
	if id == 0 || id == -1 {
		for ws.watchers[ws.nextID] != nil {
			ws.nextID++
		}
		id = ws.nextID
		ws.nextID++
	} else if ws.watchers[id] != nil {
		ws.queue(&pb.WatchResponse{Header: ws.s.header(rev), WatchId: id, Created: true, Canceled: true,
			CancelReason: "mvcc: duplicate watch ID provided on the WatchStream"})
		return
	}
	w.id = id
	ctx, cancel := context.WithCancel(ws.ctx)
	w.cancel = cancel
	ws.watchers[id] = w
	// The created response is queued before the watcher can queue events.
	ws.queue(&pb.WatchResponse{Header: ws.s.header(rev), WatchId: id, Created: true})
	ws.wg.Add(1)
	ws.s.watchers.Add(1)
	go func() {
		defer ws.wg.Done()
		defer close(w.done)
		defer ws.s.watchers.Add(-1)
		ws.run(ctx, w, start)
	}()
}

func (ws *watchStream) cancelWatch(id int64) {
	ws.mu.Lock()
	w := ws.watchers[id]
	ws.mu.Unlock()
	if w == nil {
		return // etcd ignores cancels of unknown watchers
	}
	w.cancel()
	<-w.done // no event of this watcher may follow its canceled response
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.watchers[id] == w {
		delete(ws.watchers, id)
		ws.queue(&pb.WatchResponse{Header: ws.s.header(ws.s.store.View().Rev()), WatchId: id, Canceled: true})
	}
	ws.signalLocked()
}

// run streams events to one watcher from revision next on, until canceled.
// A watcher whose queue is full waits for the stream to drain holding only
// next; compaction passing next while it waits cancels it.
func (ws *watchStream) run(ctx context.Context, w *watcher, next int64) {
	var tick <-chan time.Time
	if w.progressNotify {
		t := time.NewTicker(ws.s.cfg.ProgressNotifyInterval)
		defer t.Stop()
		tick = t.C
	}
	stalled := false
	defer func() {
		if stalled {
			ws.s.watchCounters.stalled.Add(-1)
		}
	}()
	quietSinceTick := true
	for {
		v := ws.s.store.View()
		var drained <-chan struct{}
		if v.Rev() >= next {
			d := ws.deliver(w, v, next)
			if !d.ok {
				return
			}
			quietSinceTick = quietSinceTick && !d.sentAny
			next, drained = d.next, d.drained
		}
		if (drained != nil) != stalled {
			stalled = drained != nil
			if stalled {
				ws.s.watchCounters.stalled.Add(1)
			} else {
				ws.s.watchCounters.stalled.Add(-1)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-v.Next(): // closed once a newer view exists: no apply is missed
		case <-drained:
		case <-tick:
			if quietSinceTick && next > v.Rev() {
				ws.mu.Lock()
				ws.queue(&pb.WatchResponse{Header: ws.s.header(v.Rev()), WatchId: w.id})
				ws.mu.Unlock()
			}
			quietSinceTick = true
		}
	}
}

// delivered is how far one deliver got.
type delivered struct {
	next    int64           // the first revision not yet delivered
	drained <-chan struct{} // non-nil when the queue is full: closed when it drains
	sentAny bool            // events were queued
	ok      bool            // false: the watcher is finished (compacted or stream gone)
}

// deliver queues the matching events of v from revision from on, in
// batches, while the watcher's queue has room.
func (ws *watchStream) deliver(w *watcher, v *fsm.View, from int64) delivered {
	d := delivered{next: from, ok: true}
	for from <= v.Rev() {
		if from < v.CompactRev() {
			ws.cancelCompacted(w, v)
			d.ok = false
			return d
		}
		events, bytes, drained := ws.ob.room(w)
		if drained != nil {
			d.drained = drained
			return d
		}
		batch, lastRev, err := ws.batch(w, v, from, min(events, maxEventsPerResponse), min(bytes, maxResponseBytes))
		if errors.Is(err, fsm.ErrCompacted) {
			ws.cancelCompacted(w, v)
			d.ok = false
			return d
		}
		if err != nil {
			ws.s.log.Error("reading watch events", "watch", w.id, "from", from, "err", err)
			d.ok = false
			return d
		}
		ws.mu.Lock()
		if len(batch) > 0 {
			ws.ob.push(&pb.WatchResponse{Header: ws.s.header(v.Rev()), WatchId: w.id, Events: batch}, w)
			w.lastEvent = batch[len(batch)-1].Kv.ModRevision
			d.sentAny = true
		}
		w.sent = lastRev
		ws.signalLocked()
		ws.mu.Unlock()
		from = lastRev + 1
		d.next = from
	}
	return d
}

// batch reads the next response's events of v from revision from on: up to
// maxEvents and maxBytes, never splitting the events of one revision (as
// etcd). lastRev is the last revision the batch covers.
func (ws *watchStream) batch(w *watcher, v *fsm.View, from, maxEvents, maxBytes int64) (batch []*mvccpb.Event, lastRev int64, err error) {
	batchRev, bytes, full := int64(0), int64(0), false
	lastRev = from - 1
	err = v.Events(from, w.key, w.end, func(rev int64, ev fsm.Event) bool {
		if batchRev != 0 && rev != batchRev && (int64(len(batch)) >= maxEvents || bytes >= maxBytes) {
			full = true
			return false
		}
		lastRev, batchRev = rev, rev
		if (ev.Type == mvccpb.PUT && w.noPut) || (ev.Type == mvccpb.DELETE && w.noDel) {
			return true
		}
		e := &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
		if w.prevKV {
			e.PrevKv = ev.PrevKv
		}
		batch = append(batch, e)
		bytes += eventBytes(e)
		return true
	})
	if !full {
		lastRev = v.Rev() // the walk reached the end of the view
	}
	return batch, lastRev, err
}

// cancelCompacted cancels w because history it needs is compacted, with
// etcd's response: Canceled and CompactRevision set, which clientv3 reports
// as ErrCompacted and kube-apiserver turns into 410 Gone, so its watch cache
// relists.
func (ws *watchStream) cancelCompacted(w *watcher, v *fsm.View) {
	ws.s.watchCounters.compacted.Add(1)
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.queue(&pb.WatchResponse{Header: ws.s.header(v.Rev()), WatchId: w.id, CompactRevision: v.CompactRev(), Canceled: true,
		CancelReason: "mvcc: required revision has been compacted"})
	if ws.watchers[w.id] == w {
		delete(ws.watchers, w.id)
	}
	ws.signalLocked()
}

func (ws *watchStream) signalLocked() {
	close(ws.updated)
	ws.updated = make(chan struct{})
}

// requestProgress answers a RequestProgress with a response carrying watch
// ID -1 and a revision R such that every event up to R has been sent on this
// stream and none after it (etcd 3.5+ semantics). etcd drops the request when
// a watcher lags; here the answer waits until the watchers catch up.
func (ws *watchStream) requestProgress() {
	ws.mu.Lock()
	if ws.progress {
		ws.mu.Unlock()
		return // one pending answer covers both requests
	}
	ws.progress = true
	ws.mu.Unlock()
	target := ws.s.store.View().Rev()
	ws.wg.Add(1)
	go func() {
		defer ws.wg.Done()
		for {
			ws.mu.Lock()
			if len(ws.watchers) == 0 {
				ws.progress = false // etcd sends nothing without watchers
				ws.mu.Unlock()
				return
			}
			if rev, ok := ws.progressRevLocked(target); ok {
				ws.queue(&pb.WatchResponse{Header: ws.s.header(rev), WatchId: -1})
				ws.progress = false
				ws.mu.Unlock()
				return
			}
			updated := ws.updated
			ws.mu.Unlock()
			select {
			case <-updated:
			case <-ws.ctx.Done():
				return
			}
		}
	}()
}

// progressRevLocked finds the revision a progress notification can carry:
// the lowest revision every watcher has fully sent, provided no watcher has
// already sent an event beyond it and it reaches the requested target.
func (ws *watchStream) progressRevLocked(target int64) (int64, bool) {
	minSent, maxEvent := int64(-1), int64(0)
	for _, w := range ws.watchers {
		if minSent < 0 || w.sent < minSent {
			minSent = w.sent
		}
		maxEvent = max(maxEvent, w.lastEvent)
	}
	return minSent, minSent >= target && maxEvent <= minSent
}
