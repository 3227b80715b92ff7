package serfpool

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"
)

// Two processes started with the same node name (three servers on one host
// without --node-name all call themselves after the host) make serf resolve
// the conflict by shutting the minority's gossip down, after which they wait
// forever for a cluster that will never form. The pool refuses such a merge
// instead, and a node whose own join meets another live member with its
// name stops with a NameConflictError: it says which address holds the name
// and which flag gives this node its own.

// conflictProbeTimeout bounds the check that the other holder of the name
// is alive (its gossip port accepts a connection); a stale record of this
// node's previous address does not answer and is no conflict.
const conflictProbeTimeout = time.Second

// NameConflictError reports that another live member of the pool already
// uses this node's name.
type NameConflictError struct {
	Name string
	// OtherAddr is host:port of the member that holds the name.
	OtherAddr string
	// OtherRole is its role tag (server, agent), when it publishes one.
	OtherRole string
}

func (e *NameConflictError) Error() string {
	role := "member"
	if e.OtherRole != "" {
		role = e.OtherRole
	}
	return fmt.Sprintf("node name %q is already used by another live %s of the gossip pool at %s: every server and agent needs its own name; start this one with a unique --node-name (it defaults to the host name)",
		e.Name, role, e.OtherAddr)
}

// conflictGuard is the serf merge delegate: it refuses a merge or an alive
// message in which another live address claims this node's name.
type conflictGuard struct {
	name  string
	probe func(addr string) bool

	mu    sync.Mutex
	local string // this node's gossip address, known once serf runs
	last  *NameConflictError
}

func newConflictGuard(name string) *conflictGuard {
	return &conflictGuard{name: name, probe: tcpAnswers}
}

// setLocal records this node's own gossip address.
func (g *conflictGuard) setLocal(addr string) {
	g.mu.Lock()
	g.local = addr
	g.mu.Unlock()
}

// NotifyMerge implements serf.MergeDelegate.
func (g *conflictGuard) NotifyMerge(members []*serf.Member) error {
	g.mu.Lock()
	local := g.local
	g.mu.Unlock()
	if local == "" {
		return nil // not started yet: there is no address of ours to compare
	}
	for _, m := range members {
		if m.Name != g.name || m.Status == serf.StatusLeft {
			continue
		}
		addr := net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
		if addr == local || !g.probe(addr) {
			continue
		}
		err := &NameConflictError{Name: g.name, OtherAddr: addr, OtherRole: m.Tags[tagRole]}
		g.mu.Lock()
		g.last = err
		g.mu.Unlock()
		return err
	}
	return nil
}

// take returns and clears the last conflict seen.
func (g *conflictGuard) take() *NameConflictError {
	g.mu.Lock()
	defer g.mu.Unlock()
	err := g.last
	g.last = nil
	return err
}

// tcpAnswers reports whether addr accepts a TCP connection (memberlist
// listens for TCP on its gossip port).
func tcpAnswers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, conflictProbeTimeout)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// asConflict returns the NameConflictError in err, if any.
func asConflict(err error) (*NameConflictError, bool) {
	var nce *NameConflictError
	ok := errors.As(err, &nce)
	return nce, ok
}
