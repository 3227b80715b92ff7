package raftnode

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// LinearizableRead returns a read index: once it returns, the local state
// machine has applied every entry committed before the call, so a read of
// local state is linearizable. It can be called on any server. On the
// leader it waits for the current term's barrier (so entries from earlier
// terms are applied), takes the commit index, confirms leadership with a
// quorum asked after that (confirmLeadership) and waits until the FSM has applied that index. A
// follower asks the leader for that same confirmed index (read-index,
// waiting up to LeaderWaitTimeout for a leader to be known) and waits until
// its own FSM has applied it.
func (n *Node) LinearizableRead(ctx context.Context) (uint64, error) {
	if n.stopped() {
		return 0, ErrShutdown
	}
	if err := n.fsm.haltError(); err != nil {
		return 0, err
	}
	var index uint64
	err := n.onLeader(ctx, func(ctx context.Context, addr string) (retry bool, err error) {
		if addr == "" {
			index, err = n.readIndex(ctx)
			return errors.Is(err, ErrNotLeader), err
		}
		index, retry, err = n.forwardReadIndex(ctx, addr)
		return retry, err
	})
	if err != nil {
		return 0, err
	}
	if err := n.WaitApplied(ctx, index); err != nil {
		return 0, err
	}
	return index, nil
}

// readIndex is the leader's half of LinearizableRead: an index that covers
// every write acknowledged before the call, confirmed by a quorum, without
// waiting for the local FSM.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	term, err := n.waitTermReady(ctx)
	if err != nil {
		return 0, err
	}
	index := n.raft.CommitIndex()
	// A majority asked after this point still follows this server in term
	// (see confirm.go: VerifyLeader can be satisfied by answers older than
	// the read); confirmLeadership also checks that the term is unchanged,
	// so index covers every earlier term.
	if err := n.confirmLeadership(ctx, term); err != nil {
		return 0, err
	}
	return index, nil
}

// WaitApplied blocks until the local state machine reflects every entry up to
// index: either it has applied index itself, or raft has applied index and
// the entries after the last applied command are no-ops, barriers or
// configuration changes, which never reach the state machine.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	if err := n.fsm.waitApplied(ctx, n.stop, index, n.onlyNonCommands); err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	return nil
}

// maxNonCommandScan bounds the log scan in onlyNonCommands; runs of
// non-command entries are short (one no-op and one barrier per election, a
// few configuration changes), so a longer gap means the FSM is behind.
const maxNonCommandScan = 64

// onlyNonCommands reports whether raft has applied index and no entry in
// (applied, index] is a command, i.e. the state machine already reflects
// index. Requiring raft's applied index first matters on followers: entries
// beyond it may be uncommitted leftovers that the leader will overwrite.
func (n *Node) onlyNonCommands(index, applied uint64) bool {
	if index-applied > maxNonCommandScan || n.raft.AppliedIndex() < index {
		return false
	}
	for i := index; i > applied; i-- {
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil {
			// Compacted entries were first captured in a snapshot of (or
			// restored into) this state machine, so it already holds them.
			return errors.Is(err, raft.ErrLogNotFound)
		}
		if l.Type == raft.LogCommand {
			return false
		}
	}
	return true
}
