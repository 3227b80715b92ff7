package raftnode

import (
	"io"
	"net"
	"sync"
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

// silentPeer accepts connections on a raft port's address and never
// answers, counting connections by the kind byte their dialer announces.
type silentPeer struct {
	addr  string
	mu    sync.Mutex
	kinds map[byte]int
}

func newSilentPeer(t *testing.T) *silentPeer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentPeer{addr: l.Addr().String(), kinds: map[byte]int{}}
	var conns []net.Conn
	t.Cleanup(func() {
		_ = l.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			conns = append(conns, c)
			p.mu.Unlock()
			go func() {
				kind := make([]byte, 1)
				if _, err := io.ReadFull(c, kind); err == nil {
					p.mu.Lock()
					p.kinds[kind[0]]++
					p.mu.Unlock()
				}
			}()
		}
	}()
	return p
}

func (p *silentPeer) count(kind byte) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kinds[kind]
}

// A voter that accepts and never answers holds one pending question, not
// one connection per read: a round goes on with the majority that answers.
func TestConfirmationDoesNotPileUpOnASilentVoter(t *testing.T) {
	c := startCluster(t, 2, nil)
	leader := c.nodes[c.leader(t)]
	silent := newSilentPeer(t)
	if err := leader.AddVoter(ctxT(t, 10*time.Second), "silent", silent.addr); err != nil {
		t.Fatal(err)
	}
	for range 30 {
		if _, err := leader.LinearizableRead(ctxT(t, 10*time.Second)); err != nil {
			t.Fatalf("read with two of three voters answering: %v", err)
		}
	}
	if n := silent.count(connRPC); n > 1 {
		t.Errorf("%d RPC connections to the silent voter for 30 reads; want at most 1", n)
	}
}
