package raftnode

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// LeadershipEvent is one leadership transition of this node. Term is the raft
// term observed when the transition was processed; it can be newer than the
// term in which the transition happened if several happen in quick
// succession.
type LeadershipEvent struct {
	IsLeader bool
	Term     uint64
}

// subscriberBuffer is small on purpose: leadership is level-triggered, a
// slow subscriber only needs the latest state (see fanOut).
const subscriberBuffer = 4

// leadership holds the state derived from NotifyCh: the subscribers and the
// term whose post-election barrier has completed.
type leadership struct {
	mu     sync.Mutex
	subs   map[chan LeadershipEvent]struct{}
	closed bool
	// readyTerm is the term in which this node, as leader, has applied a
	// barrier; reads in that term may be served from the local FSM.
	readyTerm uint64
	// changed is closed and replaced on every leadership or readiness change.
	changed chan struct{}
}

func (l *leadership) init() {
	l.subs = make(map[chan LeadershipEvent]struct{})
	l.changed = make(chan struct{})
}

// signalLocked wakes everyone waiting in waitTermReady. l.mu must be held.
func (l *leadership) signalLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// fanOut delivers ev to every subscriber without blocking: when a
// subscriber's buffer is full its oldest event is dropped, so it always ends
// up seeing the latest state. l.mu must be held.
func (l *leadership) fanOutLocked(ev LeadershipEvent) {
	for ch := range l.subs {
		for {
			select {
			case ch <- ev:
			default:
				select {
				case <-ch:
				default:
				}
				continue
			}
			break
		}
	}
}

func (l *leadership) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for ch := range l.subs {
		close(ch)
		delete(l.subs, ch)
	}
	l.signalLocked()
}

// Subscribe returns a channel of leadership events, starting with the current
// state, and a function that unsubscribes and closes the channel. Events are
// never blocked on: a subscriber that falls behind loses intermediate events
// but always receives the latest one. The channel is closed at Shutdown.
func (n *Node) Subscribe() (<-chan LeadershipEvent, func()) {
	l := &n.leadership
	ch := make(chan LeadershipEvent, subscriberBuffer)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		close(ch)
		return ch, func() {}
	}
	ch <- LeadershipEvent{IsLeader: n.IsLeader(), Term: n.Term()}
	l.subs[ch] = struct{}{}
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if _, ok := l.subs[ch]; ok {
				delete(l.subs, ch)
				close(ch)
			}
		})
	}
}

// observeLeadership consumes raft's NotifyCh. It never blocks on anything
// but its own lock, so raft is never held up by a subscriber.
func (n *Node) observeLeadership() {
	defer n.wg.Done()
	for {
		select {
		case isLeader := <-n.notifyCh:
			n.onLeadership(isLeader)
		case <-n.stop:
			return
		}
	}
}

func (n *Node) onLeadership(isLeader bool) {
	term := n.raft.CurrentTerm()
	ev := LeadershipEvent{IsLeader: isLeader, Term: term}
	n.log.Info("leadership changed", "leader", isLeader, "term", term)
	l := &n.leadership
	l.mu.Lock()
	l.fanOutLocked(ev)
	l.signalLocked()
	l.mu.Unlock()
	if n.cfg.MaxTimeoutMultiplier > 1 {
		// A new leader heartbeats at its configured cadence at once; a
		// deposed one waits as long as its starvation calls for.
		n.applyTimeouts()
	}
	if isLeader {
		n.wg.Add(1)
		go n.establishTerm(term)
	}
}

// establishTerm applies a barrier in term so that, once it completes, every
// entry committed in earlier terms has been applied locally; only then may
// LinearizableRead serve from the FSM in this term. It retries while this
// node is still leader of term.
func (n *Node) establishTerm(term uint64) {
	defer n.wg.Done()
	backoff := n.cfg.CommitTimeout
	for {
		var err error
		f := n.raft.Barrier(0)
		select {
		case err = <-futureErr(f):
		case <-n.stop:
			return
		}
		if err == nil {
			// raft answers a barrier from its FSM goroutine after every
			// earlier entry was applied, so its index counts as applied even
			// though the entry itself never reaches the state machine.
			if ixf, ok := f.(raft.IndexFuture); ok {
				n.fsm.setApplied(ixf.Index())
			}
		}
		stillLeader := n.raft.State() == raft.Leader && n.raft.CurrentTerm() == term
		if err == nil && stillLeader {
			l := &n.leadership
			l.mu.Lock()
			if term > l.readyTerm {
				l.readyTerm = term
			}
			l.signalLocked()
			l.mu.Unlock()
			n.log.Debug("leader barrier applied", "term", term, "applied_index", n.fsm.appliedIndex())
			return
		}
		if !stillLeader {
			return
		}
		n.log.Warn("leader barrier failed, retrying", "term", term, "err", err)
		select {
		case <-time.After(backoff):
		case <-n.stop:
			return
		}
		backoff = min(2*backoff, time.Second)
	}
}

// waitTermReady returns the current term once this node is leader and the
// term's barrier has completed. It returns NotLeaderError as soon as the node
// is not (or stops being) leader.
func (n *Node) waitTermReady(ctx context.Context) (uint64, error) {
	l := &n.leadership
	for {
		if n.raft.State() != raft.Leader {
			return 0, n.notLeader()
		}
		term := n.raft.CurrentTerm()
		l.mu.Lock()
		ready, changed := l.readyTerm, l.changed
		l.mu.Unlock()
		if ready == term {
			return term, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, fmt.Errorf("raftnode: wait for leader barrier of term %d: %w", term, context.Cause(ctx))
		case <-n.stop:
			return 0, ErrShutdown
		}
	}
}

// FollowLeadership runs work in its own goroutine for each term this node
// leads, as read from events (Subscribe), cancelling it when leadership is
// lost or the term changes, and returns once ctx ends or events is closed
// and the last run has returned. This is how every leader duty is started
// and stopped: from NotifyCh transitions, never by polling IsLeader.
func FollowLeadership(ctx context.Context, events <-chan LeadershipEvent, work func(ctx context.Context, term uint64)) error {
	var (
		term uint64 // the term work runs in; 0: not running
		stop = func() {}
	)
	defer func() { stop() }()
	for {
		var ev LeadershipEvent
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-events:
			if !ok {
				return nil
			}
			ev = e
		}
		if term != 0 && (!ev.IsLeader || ev.Term != term) {
			stop()
			term, stop = 0, func() {}
		}
		if !ev.IsLeader || term != 0 {
			continue
		}
		term, stop = ev.Term, startTerm(ctx, ev.Term, work)
	}
}

// startTerm runs work in a goroutine and returns the function that cancels
// it and waits for it to return.
func startTerm(ctx context.Context, term uint64, work func(context.Context, uint64)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		work(ctx, term)
	}()
	return func() {
		cancel()
		<-done
	}
}
