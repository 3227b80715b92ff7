package ha

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Event is one change a watch delivered.
type Event struct {
	Key, Value string
	Rev        int64
	Delete     bool
}

func (e Event) String() string {
	if e.Delete {
		return fmt.Sprintf("%d:del(%s)", e.Rev, e.Key)
	}
	return fmt.Sprintf("%d:%s=%s", e.Rev, e.Key, e.Value)
}

// Watcher follows a prefix on one server across faults: whenever its watch
// ends (server killed, paused, partitioned, canceled) it watches again from
// the revision after the last event it saw. It records every order
// violation it observes as it happens.
type Watcher struct {
	server *Server
	prefix string
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	events     []Event
	last       int64 // revision of the last event
	violations []string
	restarts   int
	lastErr    error
}

// Watch starts a watcher of prefix on s from revision from.
func Watch(s *Server, prefix string, from int64) *Watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{server: s, prefix: prefix, cancel: cancel, done: make(chan struct{}), last: from - 1}
	go w.run(ctx)
	return w
}

func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	for ctx.Err() == nil {
		w.mu.Lock()
		next := w.last + 1
		w.mu.Unlock()
		wctx, cancel := context.WithCancel(ctx)
		for resp := range w.server.client.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(next)) {
			if err := resp.Err(); err != nil {
				w.mu.Lock()
				w.lastErr = err
				w.mu.Unlock()
				break
			}
			w.add(resp.Events)
		}
		cancel()
		w.mu.Lock()
		w.restarts++
		w.mu.Unlock()
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

func (w *Watcher) add(evs []*clientv3.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range evs {
		e := Event{Key: string(ev.Kv.Key), Value: string(ev.Kv.Value), Rev: ev.Kv.ModRevision, Delete: ev.Type == clientv3.EventTypeDelete}
		// Every workload write is a single-key transaction, so revisions
		// strictly increase; a repeat is a duplicate, a step back disorder.
		if e.Rev <= w.last {
			w.violations = append(w.violations, fmt.Sprintf("event %s after revision %d", e, w.last))
		}
		w.last = e.Rev
		w.events = append(w.events, e)
	}
}

// Last returns the revision of the last event seen.
func (w *Watcher) Last() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Stop ends the watcher.
func (w *Watcher) Stop() {
	w.cancel()
	<-w.done
}

// Watchers is one watcher per server.
type Watchers struct {
	from int64
	all  []*Watcher
}

// StartWatchers watches prefix on every server from revision from.
func StartWatchers(c *Cluster, prefix string, from int64) *Watchers {
	ws := &Watchers{from: from}
	for _, s := range c.Servers {
		ws.all = append(ws.all, Watch(s, prefix, from))
	}
	return ws
}

// Sentinel writes a last key under the prefix and returns its revision:
// once a watcher has seen it, it has seen everything before it.
func Sentinel(t testing.TB, c *Cluster, prefix string) int64 {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		for _, s := range c.Servers {
			if !s.Serving() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := s.client.Put(ctx, prefix+"sentinel", fmt.Sprint(time.Now().UnixNano()))
			cancel()
			if err == nil {
				return resp.Header.Revision
			}
			if time.Now().After(deadline) {
				t.Fatalf("writing the sentinel: %v", err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// WatchReport is what CheckWatchesAndHistory found.
type WatchReport struct {
	Events   int // events in the reference history
	Restarts int // watches re-established after an error, all watchers
}

// CheckWatchesAndHistory waits until every watcher has seen the sentinel
// revision, stops them, and checks:
//   - each watcher saw revisions strictly increasing (no duplicates, no
//     disorder) and exactly the history a fresh watch reads back (no gaps);
//   - the history read back is the same on every server;
//   - every acknowledged write is in it at its acknowledged revision, and
//     every event carries a value some client wrote (nothing invented);
//   - a watch from a few random revisions of the history, on a random
//     server, delivers exactly the rest of it (resumable).
func CheckWatchesAndHistory(t testing.TB, c *Cluster, ws *Watchers, h *History, sentinel int64) WatchReport {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for _, w := range ws.all {
		for w.Last() < sentinel && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	var rep WatchReport
	for _, w := range ws.all {
		w.Stop()
		rep.Restarts += w.restarts - 1
	}

	var ref []Event
	for i, s := range c.Servers {
		got, err := ReadHistory(s, h.Prefix, ws.from, sentinel)
		if err != nil {
			t.Errorf("reading the history back from %s: %v", s.Name, err)
			continue
		}
		if ref == nil {
			ref = got
		} else if d := diffEvents(ref, got); d != "" {
			t.Errorf("history on %s differs from %s's: %s", s.Name, c.Servers[0].Name, d)
		}
		w := ws.all[i]
		for _, v := range w.violations {
			t.Errorf("watch on %s: %s", s.Name, v)
		}
		if w.Last() < sentinel {
			t.Errorf("watch on %s never reached revision %d (last %d, last error %v)", s.Name, sentinel, w.Last(), w.lastErr)
		} else if d := diffEvents(ref, through(w.events, sentinel)); d != "" {
			t.Errorf("watch on %s across the faults differs from the history read back: %s", s.Name, d)
		}
	}
	rep.Events = len(ref)

	byRev := map[int64]Event{}
	for _, e := range ref {
		byRev[e.Rev] = e
		if !e.Delete && e.Key != h.Prefix+"sentinel" && e.Value != InitialValue && !h.Written[e.Value] {
			t.Errorf("history holds %s, a value no client wrote", e)
		}
	}
	lost := 0
	for _, a := range h.Acks {
		if e, ok := byRev[a.Rev]; !ok || e.Key != a.Key || e.Value != a.Value {
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged write %s=%s at revision %d is not in the history (there: %v)", a.Key, a.Value, a.Rev, byRev[a.Rev])
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, len(h.Acks))
	}

	if len(ref) > 0 {
		for range 4 {
			i := rand.IntN(len(ref))
			s := c.Servers[rand.IntN(len(c.Servers))]
			got, err := ReadHistory(s, h.Prefix, ref[i].Rev, sentinel)
			if err != nil {
				t.Errorf("watch on %s from revision %d: %v", s.Name, ref[i].Rev, err)
			} else if d := diffEvents(ref[i:], got); d != "" {
				t.Errorf("watch on %s from revision %d: %s", s.Name, ref[i].Rev, d)
			}
		}
	}
	return rep
}

// through returns the events up to revision rev. A watcher keeps watching
// until it is stopped, so it may also have seen a write committed after the
// sentinel: one whose outcome its client saw as unknown may commit late,
// which is allowed, and the history read back ends at the sentinel.
// Out-of-order events up to rev are kept, so the comparison still sees them.
func through(evs []Event, rev int64) []Event {
	return slices.DeleteFunc(slices.Clone(evs), func(e Event) bool { return e.Rev > rev })
}

// ReadHistory watches prefix on s from revision from until the event at
// revision to, and returns the events.
func ReadHistory(s *Server, prefix string, from, to int64) ([]Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []Event
	for resp := range s.client.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from)) {
		if err := resp.Err(); err != nil {
			return out, err
		}
		for _, ev := range resp.Events {
			out = append(out, Event{Key: string(ev.Kv.Key), Value: string(ev.Kv.Value), Rev: ev.Kv.ModRevision, Delete: ev.Type == clientv3.EventTypeDelete})
			if ev.Kv.ModRevision >= to {
				return out, nil
			}
		}
	}
	return out, errors.Join(errors.New("watch ended before the last revision"), ctx.Err())
}

// diffEvents describes the first difference between two event lists, or
// returns "" when they are equal.
func diffEvents(want, got []Event) string {
	if slices.Equal(want, got) {
		return ""
	}
	for i := range min(len(want), len(got)) {
		if want[i] != got[i] {
			return fmt.Sprintf("at position %d: want %s, got %s (%d vs %d events)", i, want[i], got[i], len(want), len(got))
		}
	}
	if len(want) > len(got) {
		return fmt.Sprintf("%d events missing from the end, first %s", len(want)-len(got), want[len(got)])
	}
	return fmt.Sprintf("%d extra events at the end, first %s", len(got)-len(want), got[len(want)])
}
