package raftnode

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is raft's network: a TCP listener and dialer, optionally wrapped
// in TLS. Owning it (rather than raft.NewTCPTransport) is what lets us add
// mutual TLS and, later, multiplex raft with other traffic on one port.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	tls       *tls.Config
}

// newStreamLayer listens on bind. advertise may be empty, in which case the
// bound address is advertised and must be dialable.
func newStreamLayer(bind, advertise string, tlsCfg *tls.Config) (*streamLayer, error) {
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
	if tlsCfg != nil {
		// The server handshake runs lazily on raft's per-connection
		// goroutine (first Read), so a slow or hostile client cannot stall
		// Accept, and one without a valid certificate never gets a byte
		// decoded.
		ln = tls.NewListener(ln, tlsCfg)
	}
	return &streamLayer{Listener: ln, advertise: adv, tls: tlsCfg}, nil
}

// Addr is what raft advertises to peers.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to a peer. With TLS the handshake is completed here, inside
// the timeout, so a peer with a bad certificate fails the dial instead of the
// first RPC.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if s.tls == nil {
		conn, err := d.Dial("tcp", string(address))
		if err != nil {
			return nil, fmt.Errorf("dial raft peer %s: %w", address, err)
		}
		return conn, nil
	}
	cfg := s.tls.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(string(address))
		if err != nil {
			return nil, fmt.Errorf("dial raft peer %s: %w", address, err)
		}
		cfg.ServerName = host
	}
	conn, err := tls.DialWithDialer(d, "tcp", string(address), cfg)
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s over TLS: %w", address, err)
	}
	return conn, nil
}
