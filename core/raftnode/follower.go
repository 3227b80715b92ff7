package raftnode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Leader discovery polls raft's view every leaderPoll while no leader is
// known; after a failed attempt the wait doubles up to leaderRetryMax, so a
// dead leader that raft has not yet noticed is not redialed in a tight loop.
const (
	leaderPoll     = 5 * time.Millisecond
	leaderRetryMax = 100 * time.Millisecond
)

// noLeaderError is returned when no leader answered within the wait.
type noLeaderError struct {
	waited time.Duration
	last   error // the last attempt's error or ctx's cause; may be nil
}

func (e *noLeaderError) Error() string {
	if e.last == nil {
		return fmt.Sprintf("raftnode: no leader known after waiting %v", e.waited)
	}
	return fmt.Sprintf("raftnode: no leader reachable after waiting %v: %v", e.waited, e.last)
}

// Is matches ErrNoLeader and ErrNotLeader: either way nothing was proposed.
func (e *noLeaderError) Is(target error) bool { return target == ErrNoLeader || target == ErrNotLeader }
func (e *noLeaderError) Unwrap() error        { return e.last }

func (n *Node) leaderWait() time.Duration {
	if n.cfg.LeaderWaitTimeout > 0 {
		return n.cfg.LeaderWaitTimeout
	}
	return n.cfg.ApplyTimeout
}

// onLeader runs attempt against the leader: addr is "" when this node is the
// leader, else the leader's raft address. attempt reports retry when the
// leader did not act on the request, which may then go to whoever leads
// next. Waiting for a leader and retrying are bounded by ctx and by
// LeaderWaitTimeout; an attempt in progress only by ctx. attempt's ctx also
// ends when the node shuts down (cause ErrShutdown).
func (n *Node) onLeader(ctx context.Context, attempt func(ctx context.Context, addr string) (retry bool, err error)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(n.stopCtx, func() { cancel(ErrShutdown) })
	defer stop()

	wait := n.leaderWait()
	giveUp := time.Now().Add(wait)
	var (
		hint    string // the leader named by the last target that refused
		last    error
		backoff = leaderPoll
		timer   *time.Timer // made on the first wait: most calls never wait
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		addr, ok := n.leaderTarget(hint)
		hint = ""
		if ok {
			retry, err := attempt(ctx, addr)
			if !retry {
				return err
			}
			last = err
			var nle *NotLeaderError
			if errors.As(err, &nle) && nle.LeaderAddr != "" && nle.LeaderAddr != addr {
				hint = nle.LeaderAddr
				continue // a fresher view than ours: try it at once
			}
		}
		if !time.Now().Before(giveUp) {
			return &noLeaderError{waited: wait, last: last}
		}
		if errors.Is(context.Cause(ctx), ErrShutdown) {
			return ErrShutdown
		}
		if ctx.Err() != nil {
			return &noLeaderError{waited: wait, last: context.Cause(ctx)}
		}
		if ok {
			backoff = min(2*backoff, leaderRetryMax)
		}
		d := min(backoff, max(time.Until(giveUp), 0))
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
	}
}

// leaderTarget returns "" when this node leads, otherwise the address to
// send to: hint if set, else raft's current leader. ok is false while no
// leader is known. This node's own address is never returned: raft can
// still name it just after it stepped down.
func (n *Node) leaderTarget(hint string) (addr string, ok bool) {
	if n.raft.State() == raft.Leader {
		return "", true
	}
	self := n.Addr()
	if hint != "" && hint != self {
		return hint, true
	}
	a, id := n.raft.LeaderWithID()
	if a == "" || string(id) == n.cfg.NodeID || string(a) == self {
		return "", false
	}
	return string(a), true
}

// forwardApply sends cmd to the leader at addr and, once the leader reports
// it applied at index, waits for the local state machine to apply the same
// index and returns the local result. retry is true only when the leader
// certainly did not propose cmd.
func (n *Node) forwardApply(ctx context.Context, addr string, cmd []byte) (res any, index uint64, retry bool, err error) {
	if len(cmd) > maxRPCPayload {
		return nil, 0, false, fmt.Errorf("%w: command of %d bytes exceeds the %d byte forwarding limit",
			ErrNotApplied, len(cmd), maxRPCPayload)
	}
	// Taken before sending, so the result cannot be dropped before we pick
	// it up, however early our state machine applies it (see heldResults).
	release := n.fsm.holdResults()
	defer release()
	resp, err := n.rpcc.call(ctx, addr, opForward, cmd)
	if err != nil {
		if !errors.Is(err, errNotSent) {
			return nil, 0, false, fmt.Errorf("%w: forwarded to leader %s: %w", ErrUnknownOutcome, addr, err)
		}
		if ctx.Err() != nil {
			return nil, 0, false, fmt.Errorf("%w: forward to leader %s: %w", ErrNotApplied, addr, err)
		}
		return nil, 0, true, fmt.Errorf("forward to leader %s: %w", addr, err)
	}
	switch resp.status {
	case statusOK:
	case statusNotLeader:
		return nil, 0, true, decodeLeader(resp.payload)
	case statusShutdown:
		return nil, 0, true, fmt.Errorf("leader %s is shutting down: %w", addr, ErrNotLeader)
	case statusNotApplied:
		return nil, 0, false, fmt.Errorf("%w: at leader %s: %s", ErrNotApplied, addr, resp.payload)
	default:
		return nil, 0, false, fmt.Errorf("%w: at leader %s: %s", ErrUnknownOutcome, addr, resp.payload)
	}
	index = resp.index
	if err := n.WaitApplied(ctx, index); err != nil {
		return nil, index, false, fmt.Errorf("%w: committed at index %d by leader %s but not yet applied here: %w",
			ErrUnknownOutcome, index, addr, err)
	}
	res, ok := n.fsm.takeResult(index)
	if !ok {
		return nil, index, false, fmt.Errorf("%w: committed at index %d by leader %s, but this server's result for it "+
			"is gone (a snapshot install skipped the entry, or too many writes were applied meanwhile)",
			ErrUnknownOutcome, index, addr)
	}
	return res, index, false, nil
}

// forwardReadIndex asks the leader at addr for a confirmed read index. A read
// has no side effect, so every failure short of the caller's own ctx may be
// retried.
func (n *Node) forwardReadIndex(ctx context.Context, addr string) (index uint64, retry bool, err error) {
	resp, err := n.rpcc.call(ctx, addr, opReadIndex, nil)
	if err != nil {
		err = fmt.Errorf("raftnode: read index from leader %s: %w", addr, err)
		return 0, ctx.Err() == nil, err
	}
	switch resp.status {
	case statusOK:
		return resp.index, false, nil
	case statusNotLeader:
		return 0, true, decodeLeader(resp.payload)
	case statusShutdown:
		return 0, true, fmt.Errorf("raftnode: read index: leader %s is shutting down: %w", addr, ErrNotLeader)
	default:
		return 0, ctx.Err() == nil, fmt.Errorf("raftnode: read index from leader %s: %s", addr, resp.payload)
	}
}
