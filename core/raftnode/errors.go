package raftnode

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

var (
	// ErrNotLeader is matched (errors.Is) by every NotLeaderError. Nothing was
	// proposed; the caller may retry against the leader.
	ErrNotLeader = errors.New("raftnode: not the leader")

	// ErrUnknownOutcome means the command was handed to raft but this node
	// cannot tell whether it committed: leadership was lost or transferred
	// mid-flight, the caller's context ended, or the node shut down. The
	// write may still become visible later; it must never be reported to a
	// client as failed, nor blindly retried if it is not idempotent.
	ErrUnknownOutcome = errors.New("raftnode: outcome of the write is unknown")

	// ErrShutdown means the node is shutting down or has shut down.
	ErrShutdown = errors.New("raftnode: node is shut down")

	// ErrNoLeader means no leader was known within LeaderWaitTimeout (or the
	// caller's context), so nothing was proposed; it also matches
	// ErrNotLeader. Safe to retry.
	ErrNoLeader = errors.New("raftnode: no leader")

	// ErrNotApplied means raft refused the command before enqueueing it
	// (enqueue timeout under back-pressure). Nothing was proposed; it is
	// safe to retry.
	ErrNotApplied = errors.New("raftnode: command was not proposed")

	// ErrHalted is matched by every HaltError: the state machine could not
	// apply a committed entry, so this node applies nothing more and serves
	// no reads or writes until it is restarted with software that can.
	ErrHalted = errors.New("raftnode: the state machine stopped applying")
)

// HaltError is why a node stopped applying: the entry at Index, appended by
// Writer (the leader's Config.Version, "" when it did not record one), was
// refused by the state machine with Err.
type HaltError struct {
	Index  uint64
	Writer string
	Self   string // this node's Config.Version
	Err    error
}

func (e *HaltError) Error() string {
	writer := e.Writer
	if writer == "" {
		writer = "an unrecorded version"
	}
	self := e.Self
	if self == "" {
		self = "unknown"
	}
	return fmt.Sprintf("raftnode: raft log entry %d, written by %s, cannot be applied by this server (version %s): %v; "+
		"it stopped applying instead of skipping the entry and diverging: upgrade this server to at least the version that wrote the entry and restart it",
		e.Index, writer, self, e.Err)
}

// Is makes errors.Is(err, ErrHalted) true for every HaltError.
func (e *HaltError) Is(target error) bool { return target == ErrHalted }

func (e *HaltError) Unwrap() error { return e.Err }

// NotLeaderError says this node is not the leader and, when known, who is.
// LeaderAddr is the raft transport address; the HA layer maps it to an API
// address through membership tags.
type NotLeaderError struct {
	LeaderAddr string
	LeaderID   string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderAddr == "" {
		return "raftnode: not the leader (leader unknown)"
	}
	return fmt.Sprintf("raftnode: not the leader (leader is %s at %s)", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true for every NotLeaderError.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// mapApplyError translates a raft future error into this package's contract.
// enqueued says whether raft accepted the command: every failure after that
// point is an unknown outcome, because the entry may already be replicated.
// notLeader is called only when the answer is ErrNotLeader, to look up the
// current leader.
//
// raft.ErrLeadershipTransferInProgress is, in raft v1.7.3, answered before
// the entry is appended; it is still treated as unknown because nothing in
// raft's API promises that, and reporting unknown is never wrong.
func mapApplyError(err error, enqueued bool, notLeader func() error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader):
		// Raft only answers ErrNotLeader before the entry gets an index, so
		// nothing was proposed.
		return notLeader()
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrNotApplied, err)
	case errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
	case errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, ErrShutdown):
		// raft also answers ErrRaftShutdown for futures it dropped after
		// enqueue, and the two cases are indistinguishable from here.
		if enqueued {
			return fmt.Errorf("%w: %w", ErrUnknownOutcome, ErrShutdown)
		}
		return fmt.Errorf("%w: %w", ErrShutdown, err)
	default:
		if enqueued {
			return fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
		}
		return fmt.Errorf("raftnode: apply: %w", err)
	}
}

func (n *Node) notLeader() error {
	addr, id := n.Leader()
	return &NotLeaderError{LeaderAddr: addr, LeaderID: id}
}
