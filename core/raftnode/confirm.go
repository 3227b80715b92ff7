package raftnode

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// Leadership confirmation for reads (read-index).
//
// A read served by the leader is linearizable only if the leader was still
// the leader at some moment after the read began. hashicorp/raft's
// VerifyLeader does not prove that: it counts the next successful heartbeat
// or replication answer from each follower, even an answer to a request
// sent before the read began. A leader stopped (SIGSTOP, a long GC pause, a
// frozen VM) finds such answers waiting when it resumes, is confirmed by
// them and serves the state it had before the pause, although another
// leader has committed writes since (TestPauseLeader saw a read return a
// value overwritten two seconds earlier).
//
// So the leader asks the voters itself, with a request sent after the read
// began (opConfirm): each answers the term it is in and the leader it
// follows, as of when it answers. A majority (the leader included) still in
// the leader's term and following it means no later term had a leader then:
// electing one needs a majority of votes, and a server that voted in a later
// term is in it. Rounds are shared: every read that arrives while a round is
// in flight joins the next one, which starts when it ends.

// confirmer coalesces leadership confirmations into rounds.
type confirmer struct {
	mu      sync.Mutex
	running bool
	next    *confirmRound // the round callers join; starts once the running one ends
	// asking holds the peers with a question still unanswered. A round does
	// not wait for a slow peer (a majority suffices) and does not cancel its
	// question either: cancelling mid-handshake, round after round, would
	// pile half-open connections on a peer that is slow to accept them. A
	// later round skips the peer until it answers.
	asking map[string]bool
}

type confirmRound struct {
	done chan struct{}
	err  error
}

// confirmLeadership returns nil once a majority of voters, asked after the
// call began, were in term and followed this server.
func (n *Node) confirmLeadership(ctx context.Context, term uint64) error {
	c := &n.confirm
	c.mu.Lock()
	if c.next == nil {
		c.next = &confirmRound{done: make(chan struct{})}
	}
	r := c.next
	if !c.running {
		n.startRoundLocked()
	}
	c.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		return fmt.Errorf("raftnode: confirm leadership: %w", context.Cause(ctx))
	}
	if r.err != nil {
		return r.err
	}
	if n.raft.CurrentTerm() != term {
		return n.notLeader()
	}
	return nil
}

// startRoundLocked runs the waiting round; when it ends, the next one starts
// if anyone joined it meanwhile. c.mu is held.
func (n *Node) startRoundLocked() {
	c := &n.confirm
	r := c.next
	c.next, c.running = nil, true
	// Not counted in n.wg (a read may start a round while Shutdown waits):
	// a round ends by itself once stopCtx is cancelled and raft is shut down.
	go func() {
		r.err = n.confirmRound()
		close(r.done)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.running = false
		if c.next != nil {
			n.startRoundLocked()
		}
	}()
}

// peerAnswer is one voter's answer to opConfirm.
type peerAnswer struct {
	yes, legacy bool
	term        uint64
}

// confirmRound asks every other voter, in parallel, and returns nil once a
// majority (this server included) confirms. A server of a version without
// opConfirm (a rolling upgrade) answers with an error; such answers count
// only if hashicorp/raft's VerifyLeader also succeeds.
func (n *Node) confirmRound() error {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	term := n.raft.CurrentTerm()
	f := n.raft.GetConfiguration()
	if err := f.Error(); errors.Is(err, raft.ErrRaftShutdown) {
		return ErrShutdown
	} else if err != nil {
		return fmt.Errorf("raftnode: confirm leadership: read the configuration: %w", err)
	}
	var peers []string
	voters, self := 0, 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) == n.cfg.NodeID {
			self = 1 // its own vote is given
		} else {
			peers = append(peers, string(s.Address))
		}
	}
	need := voters/2 + 1 - self
	if need <= 0 {
		return nil
	}
	answers := make(chan peerAnswer, len(peers))
	asked := 0
	for _, addr := range peers {
		if n.startAsking(addr) {
			asked++
			go func() { answers <- n.askPeer(addr, term) }()
		}
	}
	yes, legacy := 0, 0
	for range asked {
		a := <-answers
		switch {
		case a.term > term:
			return n.notLeader()
		case a.yes:
			yes++
		case a.legacy:
			legacy++
		}
		if yes >= need {
			return nil
		}
	}
	if legacy > 0 && yes+legacy >= need {
		if err := n.raft.VerifyLeader().Error(); err == nil {
			return nil
		}
	}
	return n.notLeader()
}

// startAsking marks addr as asked, unless a question to it is unanswered.
func (n *Node) startAsking(addr string) bool {
	c := &n.confirm
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.asking[addr] {
		return false
	}
	if c.asking == nil {
		c.asking = map[string]bool{}
	}
	c.asking[addr] = true
	return true
}

// askPeer sends opConfirm to the voter at addr, waiting at most
// ApplyTimeout, and clears its mark once answered.
func (n *Node) askPeer(addr string, term uint64) peerAnswer {
	defer func() {
		n.confirm.mu.Lock()
		delete(n.confirm.asking, addr)
		n.confirm.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(n.stopCtx, n.cfg.ApplyTimeout)
	defer cancel()
	resp, err := n.rpcc.call(ctx, addr, opConfirm, nil)
	switch {
	case err != nil:
		return peerAnswer{}
	case resp.status == statusError:
		return peerAnswer{legacy: true}
	case resp.status != statusOK:
		return peerAnswer{}
	}
	return peerAnswer{term: resp.index, yes: resp.index == term && string(resp.payload) == n.cfg.NodeID}
}

// answerConfirm is a voter's side of opConfirm: its current term, and the
// ID of the leader it follows (empty if none).
func (n *Node) answerConfirm() rpcResponse {
	_, id := n.raft.LeaderWithID()
	return rpcResponse{status: statusOK, index: n.raft.CurrentTerm(), payload: []byte(id)}
}
