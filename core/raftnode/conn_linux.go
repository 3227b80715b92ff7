package raftnode

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peerClosed reports whether an idle pooled connection can no longer carry a
// request: the peer closed it (EOF, or a TLS close_notify waiting to be
// read) or it is broken. It peeks at the socket without blocking; an idle
// live connection has nothing to read, because the server never sends
// unsolicited bytes (TLS session tickets arrive before the first response
// and are consumed with it). Reusing a closed connection would turn a
// request the server never saw into an unknown outcome.
func peerClosed(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	idle := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		idle = errors.Is(rerr, syscall.EAGAIN)
		return true // never wait for readability
	})
	return err != nil || !idle
}
