package raftnode

import (
	"testing"
	"time"
)

// The leader serves a read only once a majority, asked after the read
// began, follows it in its term: each follower answers its own term and
// leader, and with both followers gone no read is served.
func TestReadConfirmedByAMajorityAskedAfterIt(t *testing.T) {
	c := startCluster(t, 3, func(cfg *Config) { cfg.ApplyTimeout = 2 * time.Second })
	li := c.leader(t)
	leader := c.nodes[li]
	term := leader.raft.CurrentTerm()
	var followers []*Node
	for i, n := range c.nodes {
		if i != li {
			followers = append(followers, n)
		}
	}
	for _, f := range followers {
		waitFor(t, 10*time.Second, f.ID()+" follows the leader", func() bool {
			a := f.answerConfirm()
			return a.index == term && string(a.payload) == leader.ID()
		})
	}
	if _, err := leader.LinearizableRead(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("read with every follower up: %v", err)
	}
	for _, f := range followers {
		_ = f.Shutdown()
	}
	if idx, err := leader.readIndex(ctxT(t, 10*time.Second)); err == nil {
		t.Fatalf("the leader served a read index (%d) with no follower left to confirm it", idx)
	}
}
