package ingress

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// connDstKeyT keys a connection's original destination in its context.
type connDstKeyT struct{}

// connContext records where a connection was addressed: a Gateway's
// address reaches the node through the service proxy's DNAT to the data
// plane's port, so the Gateway (and its listener port) is the connection's
// original destination, which conntrack keeps.
func connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connDstKeyT{}, originalDst(c))
}

func connDst(ctx context.Context) netip.AddrPort {
	a, _ := ctx.Value(connDstKeyT{}).(netip.AddrPort)
	return a
}

// originalDst is the destination the client addressed: the pre-DNAT one
// (SO_ORIGINAL_DST) when conntrack has it, else the local address.
func originalDst(c net.Conn) netip.AddrPort {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	local := netip.AddrPort{}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		local = a.AddrPort()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return local
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return local
	}
	var dst netip.AddrPort
	_ = raw.Control(func(fd uintptr) {
		// SO_ORIGINAL_DST answers a struct sockaddr_in, which fits the
		// 16 bytes of an ipv6_mreq.
		m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			return
		}
		port := binary.BigEndian.Uint16(m.Multiaddr[2:4])
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(m.Multiaddr[4:8])), port)
	})
	if !dst.IsValid() {
		return local
	}
	return dst
}
