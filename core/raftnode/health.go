package raftnode

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Local health awareness (the idea of memberlist's Lifeguard, applied to
// raft): a server measures how late its own goroutines get to run and, while
// it is starved of CPU, waits longer before it takes a silent leader for
// dead. A follower whose heartbeat handler runs a second late cannot tell a
// dead leader from its own starvation; raising its timeouts keeps it from
// starting elections that only move leadership (and the plugins) around.
//
// hashicorp/raft v1.7 can change HeartbeatTimeout and ElectionTimeout at
// runtime (ReloadConfig) but not LeaderLeaseTimeout. A leader sends
// heartbeats every HeartbeatTimeout/10 to 2x that, and steps down when a
// quorum has not answered within the fixed lease; raising its
// HeartbeatTimeout 4x would space its heartbeats wider than its lease. So
// the multiplier applies while this server follows (or campaigns), and a
// leader runs with the configured timeouts.

const (
	// healthTick is how often the sampler wakes; its lateness is the
	// scheduling delay measured.
	healthTick = 100 * time.Millisecond
	// healthWindow is how many ticks make one window, judged by its worst
	// lateness.
	healthWindow = 10
	// healthRecover is how many healthy windows in a row lower the
	// multiplier one step: it rises at once, falls slowly (hysteresis).
	healthRecover = 10
)

// healthPolicy is what a window's worst lateness is judged against.
type healthPolicy struct {
	// max is the largest multiplier; 1 turns adaptation off.
	max int
	// base is the configured HeartbeatTimeout.
	base time.Duration
	// starved: a window whose worst lateness reaches it raises the
	// multiplier; healthy: one whose worst lateness stays under it counts
	// towards lowering it. Between the two a window resets the count.
	starved, healthy time.Duration
	// recover is the healthy windows in a row that lower it one step.
	recover int
}

func newHealthPolicy(heartbeat time.Duration, maxMultiplier int) healthPolicy {
	return healthPolicy{max: max(1, maxMultiplier), base: heartbeat,
		starved: heartbeat / 5, healthy: heartbeat / 10, recover: healthRecover}
}

// localHealth is the score: the current multiplier and the healthy windows
// seen in a row. Not safe for concurrent use; the sampler owns it.
type localHealth struct {
	p    healthPolicy
	mult int
	calm int
}

func newLocalHealth(p healthPolicy) *localHealth { return &localHealth{p: p, mult: 1} }

// window judges one window by its worst scheduling lateness and returns the
// multiplier. A starved window raises it by at least one step, and at once
// to what the lateness calls for (1 + 2*lateness/base, rounded up: a server
// that ran 300 ms late against a 500 ms timeout waits 3x); recover healthy
// windows in a row lower it one step.
func (h *localHealth) window(worst time.Duration) int {
	switch {
	case worst >= h.p.starved:
		need := 1 + int((2*worst+h.p.base-1)/h.p.base)
		h.mult = min(h.p.max, max(h.mult+1, need))
		h.calm = 0
	case worst < h.p.healthy:
		h.calm++
		if h.calm >= h.p.recover && h.mult > 1 {
			h.mult--
			h.calm = 0
		}
	default:
		h.calm = 0
	}
	return h.mult
}

// latenessWindow turns tick arrival times into windows' worst lateness.
type latenessWindow struct {
	tick  time.Duration
	last  time.Time
	worst time.Duration
	n     int
}

// observe records a tick seen at now; it returns the window's worst
// lateness and true when the window is complete. A tick arriving later
// than tick after the previous one was late by the difference (missed
// ticks count as one long lateness).
func (w *latenessWindow) observe(now time.Time) (time.Duration, bool) {
	if !w.last.IsZero() {
		w.worst = max(w.worst, now.Sub(w.last)-w.tick)
	}
	w.last = now
	w.n++
	if w.n < healthWindow {
		return 0, false
	}
	worst := w.worst
	w.worst, w.n = 0, 0
	return worst, true
}

// timeoutMultiplier is what Stats and the metric report.
type timeoutMultiplier struct{ v atomic.Int32 }

func (t *timeoutMultiplier) get() int { return int(max(1, t.v.Load())) }

// watchHealth samples this server's scheduling lateness until Shutdown and
// applies the multiplier it calls for.
func (n *Node) watchHealth() {
	defer n.wg.Done()
	h := newLocalHealth(newHealthPolicy(n.cfg.HeartbeatTimeout, n.cfg.MaxTimeoutMultiplier))
	w := latenessWindow{tick: healthTick}
	t := time.NewTicker(healthTick)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		worst, done := w.observe(time.Now())
		if !done {
			continue
		}
		before := n.multiplier.get()
		m := h.window(worst)
		if m != before {
			n.log.Info("raft timeouts scaled for this server's scheduling delay",
				"multiplier", m, "worst_lateness", worst.Round(time.Millisecond))
		}
		n.multiplier.v.Store(int32(m))
		n.applyTimeouts()
	}
}

// applyTimeouts reloads raft's heartbeat and election timeouts: the
// configured ones times the multiplier on a follower or candidate, the
// configured ones on the leader (see the comment at the top).
func (n *Node) applyTimeouts() {
	m := time.Duration(n.multiplier.get())
	if n.raft.State() == raft.Leader {
		m = 1
	}
	rc := n.raft.ReloadableConfig()
	hb, el := n.cfg.HeartbeatTimeout*m, n.cfg.ElectionTimeout*m
	if rc.HeartbeatTimeout == hb && rc.ElectionTimeout == el {
		return
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout = hb, el
	if err := n.raft.ReloadConfig(rc); err != nil {
		n.log.Warn("raft timeouts not reloaded", "heartbeat_timeout", hb, "election_timeout", el, "error", err)
	}
}
