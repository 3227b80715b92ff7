package raftnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Connection kinds: the first byte a dialer writes on a connection to the
// raft port (inside TLS when TLS is on, so only cluster members can even
// choose a kind). The values are part of the wire protocol between servers;
// never renumber them.
const (
	connRaft  byte = 1 // hashicorp/raft NetworkTransport
	connRPC   byte = 2 // keelson's forwarding RPC (forward.go)
	connPeer  byte = 3 // a caller's own service between servers (PeerListener)
	connAdmin byte = 4 // the operator service between servers (AdminListener)
)

// muxLimits bound what connections that have not finished their TLS
// handshake and kind byte may cost: anyone who can reach the raft port can
// open them, certificate or not.
type muxLimits struct {
	// handshakeTimeout bounds the TLS handshake plus the kind byte, so a
	// peer that connects and stays silent holds its slot only that long.
	handshakeTimeout time.Duration
	// maxPending is how many connections may be in their handshake at
	// once; more are closed on accept, without a goroutine.
	maxPending int
}

// defaultMuxLimits: a cluster has a handful of servers, each opening a few
// connections (transportPool, forwarding, peer gRPC), so 128 handshakes at
// once is far above legitimate use while bounding a flood.
func defaultMuxLimits() muxLimits {
	return muxLimits{handshakeTimeout: 10 * time.Second, maxPending: 128}
}

// mux owns the raft port: it accepts TCP connections, completes the server
// TLS handshake when configured, reads the kind byte and hands the
// connection to the raft transport or to the RPC server. Consul and Nomad
// share their server port the same way.
type mux struct {
	ln        net.Listener
	advertise net.Addr
	tls       *tls.Config
	log       *slog.Logger

	limits muxLimits
	// pending holds a token per connection in its handshake (route).
	pending chan struct{}

	raft, rpc, peer, admin chan net.Conn
	done                   chan struct{}
	closeOnce              sync.Once
	closeErr               error
	wg                     sync.WaitGroup
}

// newMux listens on bind and starts accepting. advertise may be empty, in
// which case the bound address is advertised and must be dialable.
func newMux(bind, advertise string, tlsCfg *tls.Config, log *slog.Logger, limits muxLimits) (*mux, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft transport: listen on BindAddr %q: %w", bind, err)
	}
	var adv net.Addr = ln.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("raft transport: resolve AdvertiseAddr %q: %w", advertise, err)
		}
		adv = a
	}
	if ip := adv.(*net.TCPAddr).IP; ip == nil || ip.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft transport: advertised address %s is not dialable; set AdvertiseAddr", adv)
	}
	m := &mux{
		ln: ln, advertise: adv, tls: tlsCfg, log: log,
		limits: limits, pending: make(chan struct{}, limits.maxPending),
		raft: make(chan net.Conn), rpc: make(chan net.Conn), peer: make(chan net.Conn), admin: make(chan net.Conn),
		done: make(chan struct{}),
	}
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			// Out of file descriptors and similar: back off, keep serving.
			m.log.Warn("raft port: accept failed", "err", err)
			select {
			case <-time.After(backoff):
			case <-m.done:
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		select {
		case m.pending <- struct{}{}:
		default:
			m.refused(conn)
			continue
		}
		m.wg.Add(1)
		go m.route(conn)
	}
}

// refused closes a connection that arrived while maxPending others were
// still in their handshake.
func (m *mux) refused(conn net.Conn) {
	m.log.Warn("raft port: too many connections in their handshake; closing a new one",
		"remote", conn.RemoteAddr(), "max_pending", m.limits.maxPending)
	conn.Close()
}

// route runs the handshake and reads the kind byte on the connection's own
// goroutine, so a slow or hostile client cannot stall Accept, and one
// without a valid certificate never reaches raft or the RPC server.
func (m *mux) route(conn net.Conn) {
	defer m.wg.Done()
	kind, ok := m.handshake(conn)
	if !ok {
		return
	}
	conn = kind.conn
	var to chan net.Conn
	switch kind.kind {
	case connRaft:
		to = m.raft
	case connRPC:
		to = m.rpc
	case connPeer:
		to = m.peer
	case connAdmin:
		to = m.admin
	default:
		m.log.Warn("raft port: unknown connection kind", "remote", conn.RemoteAddr(), "kind", kind.kind)
		conn.Close()
		return
	}
	select {
	case to <- conn:
	case <-m.done:
		conn.Close()
	}
}

type routed struct {
	conn net.Conn
	kind byte
}

// handshake completes TLS and reads the kind byte within handshakeTimeout,
// then gives back the connection's pending slot. A connection that fails is
// closed.
func (m *mux) handshake(conn net.Conn) (routed, bool) {
	defer func() { <-m.pending }()
	if m.tls != nil {
		conn = tls.Server(conn, m.tls)
	}
	_ = conn.SetDeadline(time.Now().Add(m.limits.handshakeTimeout))
	var kind [1]byte
	if _, err := conn.Read(kind[:]); err != nil {
		m.log.Debug("raft port: dropped connection before its kind byte", "remote", conn.RemoteAddr(), "err", err)
		conn.Close()
		return routed{}, false
	}
	_ = conn.SetDeadline(time.Time{})
	return routed{conn: conn, kind: kind[0]}, true
}

// Close stops accepting and closes the listener; connections already handed
// out belong to their consumer. Safe to call more than once.
func (m *mux) Close() error {
	m.closeOnce.Do(func() {
		close(m.done)
		m.closeErr = m.ln.Close()
		m.wg.Wait()
	})
	return m.closeErr
}

// listener returns a net.Listener yielding the connections of one kind.
func (m *mux) listener(kind byte) net.Listener {
	ch := m.raft
	if kind == connRPC {
		ch = m.rpc
	}
	return &muxListener{m: m, ch: ch}
}

type muxListener struct {
	m  *mux
	ch chan net.Conn
}

func (l *muxListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}

// Close closes the whole mux: raft's transport and the RPC server are shut
// down together, at Node.Shutdown.
func (l *muxListener) Close() error   { return l.m.Close() }
func (l *muxListener) Addr() net.Addr { return l.m.advertise }

// peerListener yields the connections of one caller-served kind (connPeer,
// connAdmin). Unlike muxListener, closing it stops only this listener: its
// server (gRPC) may be stopped while raft keeps running.
type peerListener struct {
	m         *mux
	ch        chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func (l *peerListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}

func (l *peerListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *peerListener) Addr() net.Addr { return l.m.advertise }

// dialKind connects to a server's raft port and announces kind. With TLS the
// handshake is completed inside the dial, so a peer with a bad certificate
// fails the dial instead of the first request.
func dialKind(ctx context.Context, address string, tlsCfg *tls.Config, kind byte) (net.Conn, error) {
	nd := &net.Dialer{}
	var conn net.Conn
	var err error
	if tlsCfg == nil {
		conn, err = nd.DialContext(ctx, "tcp", address)
	} else {
		cfg := tlsCfg.Clone()
		if cfg.ServerName == "" {
			host, _, serr := net.SplitHostPort(address)
			if serr != nil {
				return nil, fmt.Errorf("dial %s: %w", address, serr)
			}
			cfg.ServerName = host
		}
		conn, err = (&tls.Dialer{NetDialer: nd, Config: cfg}).DialContext(ctx, "tcp", address)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(dl)
	}
	if _, err := conn.Write([]byte{kind}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("dial %s: announce connection kind: %w", address, err)
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

// streamLayer is raft's network: the raft connections of the mux, and a
// dialer that announces itself as raft.
type streamLayer struct {
	net.Listener
	tls *tls.Config
}

// Dial connects to a peer's raft transport.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := dialKind(ctx, string(address), s.tls, connRaft)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("raft peer: %w (timeout %v)", err, timeout)
		}
		return nil, fmt.Errorf("raft peer: %w", err)
	}
	return conn, nil
}
