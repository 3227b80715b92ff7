package raftnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// rpcServer answers forwarded writes and read-index requests from the other
// servers, on the RPC connections of the mux.
type rpcServer struct {
	n  *Node
	ln net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (s *rpcServer) serve() {
	defer s.n.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // only after the mux is closed
		}
		if !s.track(conn) {
			conn.Close()
			return
		}
		s.n.wg.Add(1)
		go s.handle(conn)
	}
}

func (s *rpcServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// close closes every open connection; handlers blocked on a read return,
// handlers inside Apply return once Node.stop is closed.
func (s *rpcServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	clear(s.conns)
}

func (s *rpcServer) handle(conn net.Conn) {
	defer s.n.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
	}()
	c := newRPCConn(conn)
	for {
		req, err := readRequest(c.r)
		if err != nil {
			return // peer closed, or garbage: either way the connection is done
		}
		if err := writeResponse(c.w, s.n.serveRPC(req)); err != nil {
			return
		}
	}
}

// serveRPC runs one request on this node as if it were called locally. The
// request's budget is the caller's remaining context, so an abandoned
// request does not hold the leader longer than the caller waits.
func (n *Node) serveRPC(req rpcRequest) rpcResponse {
	ctx, cancel := context.WithCancel(n.stopCtx)
	if req.budget > 0 {
		ctx, cancel = context.WithTimeout(n.stopCtx, req.budget)
	}
	defer cancel()
	switch req.op {
	case opForward:
		_, index, err := n.applyLocal(ctx, req.payload)
		if err == nil {
			n.nudgeFollowers()
		}
		return applyStatus(index, err)
	case opReadIndex:
		index, err := n.readIndex(ctx)
		return readStatus(index, err)
	case opConfirm:
		return n.answerConfirm()
	default:
		return rpcResponse{status: statusError, payload: []byte(fmt.Sprintf("unknown rpc op %d", req.op))}
	}
}

// nudge coalesces nudgeFollowers calls: at most one barrier in flight, and
// one more after it if anything asked meanwhile.
type nudge struct {
	mu      sync.Mutex
	running bool
	again   bool
}

// nudgeFollowers makes the followers learn the current commit index now.
// The forwarder waits for its own state machine to apply its write, and
// raft tells followers the commit index only with the next AppendEntries:
// with no other write flowing that is up to 2×CommitTimeout later. A barrier
// is a log entry, so appending one replicates at once, carrying the commit
// index; it costs one log write, shared by every write forwarded meanwhile.
func (n *Node) nudgeFollowers() {
	n.nudge.mu.Lock()
	defer n.nudge.mu.Unlock()
	if n.nudge.running {
		n.nudge.again = true
		return
	}
	n.nudge.running = true
	// Called from an RPC handler, itself counted in wg, so this Add cannot
	// race with Shutdown's Wait reaching zero.
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			select {
			case <-futureErr(n.raft.Barrier(n.cfg.ApplyTimeout)):
			case <-n.stop:
				return
			}
			n.nudge.mu.Lock()
			if !n.nudge.again || n.raft.State() != raft.Leader {
				n.nudge.running, n.nudge.again = false, false
				n.nudge.mu.Unlock()
				return
			}
			n.nudge.again = false
			n.nudge.mu.Unlock()
		}
	}()
}

// forwardPoolSize is how many idle connections are kept per leader address:
// about the number of concurrent forwarded requests expected, so a busy
// follower does not redial.
const forwardPoolSize = 16

// rpcClient pools RPC connections per server address.
type rpcClient struct {
	tls *tls.Config

	mu     sync.Mutex
	idle   map[string][]*rpcConn
	closed bool

	dials atomic.Int64 // connections opened, for tests of pooling
}

// get returns an idle live connection to addr, or dials one.
func (c *rpcClient) get(ctx context.Context, addr string) (*rpcConn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrShutdown
		}
		conns := c.idle[addr]
		if len(conns) == 0 {
			c.mu.Unlock()
			break
		}
		conn := conns[len(conns)-1]
		c.idle[addr] = conns[:len(conns)-1]
		c.mu.Unlock()
		if !conn.stale() {
			return conn, nil
		}
		conn.Close()
	}
	dctx, cancel := context.WithTimeout(ctx, transportTimeout)
	defer cancel()
	c.dials.Add(1)
	conn, err := dialKind(dctx, addr, c.tls, connRPC)
	if err != nil {
		return nil, err
	}
	return newRPCConn(conn), nil
}

func (c *rpcClient) put(addr string, conn *rpcConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || len(c.idle[addr]) >= forwardPoolSize {
		conn.Close()
		return
	}
	c.idle[addr] = append(c.idle[addr], conn)
}

func (c *rpcClient) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, conns := range c.idle {
		for _, conn := range conns {
			conn.Close()
		}
	}
	clear(c.idle)
}

// errNotSent marks a failure before the whole request was written: the
// target cannot have acted on it, so the caller may retry anywhere.
var errNotSent = errors.New("request not sent")

// call sends one request to addr and reads the answer. Errors wrapping
// errNotSent happened before the request was complete on the wire; any
// other error came after, when the target may have acted on it.
func (c *rpcClient) call(ctx context.Context, addr string, op byte, payload []byte) (rpcResponse, error) {
	conn, err := c.get(ctx, addr)
	if err != nil {
		return rpcResponse{}, fmt.Errorf("%w: %w", errNotSent, err)
	}
	req := rpcRequest{op: op, payload: payload}
	if dl, ok := ctx.Deadline(); ok {
		req.budget = time.Until(dl)
		_ = conn.SetDeadline(dl)
	}
	// Cancellation (and Node shutdown, through ctx) interrupts the blocked
	// read or write; the connection is then discarded.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := writeRequest(conn.w, req); err != nil {
		conn.Close()
		return rpcResponse{}, fmt.Errorf("%w: write to %s: %w", errNotSent, addr, errOrCause(ctx, err))
	}
	resp, err := readResponse(conn.r)
	if err != nil {
		conn.Close()
		return rpcResponse{}, fmt.Errorf("read answer from %s: %w", addr, errOrCause(ctx, err))
	}
	if !stop() {
		conn.Close() // the deadline was already poisoned
		return resp, nil
	}
	_ = conn.SetDeadline(time.Time{})
	c.put(addr, conn)
	return resp, nil
}

// errOrCause prefers the context's cause to the i/o timeout it provoked.
func errOrCause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", context.Cause(ctx), err)
	}
	return err
}
