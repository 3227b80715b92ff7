package raftnode

import (
	"sync"

	"github.com/hashicorp/raft"
)

// commitClamp is the raft transport with one correction to what a follower
// is told: an AppendEntries request's LeaderCommitIndex is lowered to the
// index of the last entry the request proves the follower shares with the
// leader (PrevLogEntry plus its entries), as the Raft paper's receiver rule
// 5 says: commitIndex = min(leaderCommit, index of last new entry).
//
// hashicorp/raft (v1.7.3) takes min(leaderCommit, the follower's last
// index) instead. A deposed leader can hold uncommitted entries of its old
// term past the point where its log agrees with the new leader's; a request
// that matches below them and carries no entries (the new leader's
// replication read its last index before appending its first entry of the
// term, and read the commit index after committing it) then makes the
// follower apply those stale entries. TestPauseLeader caught it: a leader
// stopped with SIGSTOP applied a write no other server has, and its state
// machine diverged. With the clamp the follower learns the rest of the
// commit index from the next request, which carries the new leader's
// entries and so truncates the stale ones first.
type commitClamp struct {
	*raft.NetworkTransport
	out  chan raft.RPC
	stop chan struct{}
	once sync.Once
}

func newCommitClamp(t *raft.NetworkTransport) *commitClamp {
	c := &commitClamp{NetworkTransport: t, out: make(chan raft.RPC), stop: make(chan struct{})}
	go c.run()
	return c
}

// Consumer is what raft reads requests from.
func (c *commitClamp) Consumer() <-chan raft.RPC { return c.out }

// run relays requests from the network to raft until Close. A request
// dropped by Close is answered by the transport's own shutdown.
func (c *commitClamp) run() {
	in := c.NetworkTransport.Consumer()
	for {
		select {
		case rpc := <-in:
			if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
				clampLeaderCommit(req)
			}
			select {
			case c.out <- rpc:
			case <-c.stop:
				return
			}
		case <-c.stop:
			return
		}
	}
}

// Close stops the relay and closes the transport.
func (c *commitClamp) Close() error {
	c.once.Do(func() { close(c.stop) })
	return c.NetworkTransport.Close()
}

// clampLeaderCommit lowers req's LeaderCommitIndex to the last index the
// request covers and reports whether it did. A heartbeat (commit index 0)
// is left alone.
func clampLeaderCommit(req *raft.AppendEntriesRequest) bool {
	if req.LeaderCommitIndex == 0 {
		return false
	}
	last := req.PrevLogEntry
	if n := len(req.Entries); n > 0 {
		last = req.Entries[n-1].Index
	}
	if req.LeaderCommitIndex <= last {
		return false
	}
	req.LeaderCommitIndex = last
	return true
}
