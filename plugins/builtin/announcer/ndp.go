package announcer

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// The NDP frames (RFC 4861) the responder reads and writes: Ethernet II,
// an IPv6 header with hop limit 255, then an ICMPv6 neighbour
// solicitation or advertisement with a link-layer address option.
const (
	ipv6HeaderLen   = 40
	icmpNS          = 135
	icmpNA          = 136
	ndpMsgLen       = 24 // type, code, checksum, flags/reserved, target
	ndpOptLen       = 8  // one link-layer address option
	naFlagSolicited = 0x40
	naFlagOverride  = 0x20
	optSourceLLAddr = 1
	optTargetLLAddr = 2
	protocolICMPv6  = 58
	ndpHopLimit     = 255
	ethTypeIPv6     = unix.ETH_P_IPV6
	allNodesGroup   = "ff02::1"
)

var allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}

// nsQuestion is a parsed neighbour solicitation.
type nsQuestion struct {
	srcMAC net.HardwareAddr // the solicitation's link-layer source
	srcIP  netip.Addr       // unspecified for duplicate address detection
	target netip.Addr
}

// parseNS reads an Ethernet frame; ok is false for anything but a valid
// neighbour solicitation (hop limit 255, code 0, checksum right).
func parseNS(b []byte) (q nsQuestion, ok bool) {
	if len(b) < ethHeaderLen+ipv6HeaderLen+ndpMsgLen || binary.BigEndian.Uint16(b[12:14]) != ethTypeIPv6 {
		return q, false
	}
	ip := b[ethHeaderLen:]
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if ip[0]>>4 != 6 || ip[6] != protocolICMPv6 || ip[7] != ndpHopLimit || plen < ndpMsgLen || len(ip) < ipv6HeaderLen+plen {
		return q, false
	}
	src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	msg := ip[ipv6HeaderLen : ipv6HeaderLen+plen]
	if msg[0] != icmpNS || msg[1] != 0 || icmpv6Checksum(src, dst, msg) != 0 {
		return q, false
	}
	q.srcIP, q.target = src, netip.AddrFrom16([16]byte(msg[8:24]))
	q.srcMAC = net.HardwareAddr(append([]byte(nil), b[6:12]...))
	for opts := msg[ndpMsgLen:]; len(opts) >= 8 && opts[1] > 0 && len(opts) >= int(opts[1])*8; opts = opts[int(opts[1])*8:] {
		if opts[0] == optSourceLLAddr {
			q.srcMAC = net.HardwareAddr(append([]byte(nil), opts[2:8]...))
		}
	}
	return q, true
}

// naFrame builds a neighbour advertisement saying target is at mac, from
// src to dst (Ethernet dstMAC).
func naFrame(dstMAC, mac net.HardwareAddr, src, dst, target netip.Addr, flags byte) []byte {
	b := make([]byte, ethHeaderLen+ipv6HeaderLen+ndpMsgLen+ndpOptLen)
	copy(b[0:6], dstMAC)
	copy(b[6:12], mac)
	binary.BigEndian.PutUint16(b[12:14], ethTypeIPv6)
	ip := b[ethHeaderLen:]
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], ndpMsgLen+ndpOptLen)
	ip[6], ip[7] = protocolICMPv6, ndpHopLimit
	s16, d16, t16 := src.As16(), dst.As16(), target.As16()
	copy(ip[8:24], s16[:])
	copy(ip[24:40], d16[:])
	msg := ip[ipv6HeaderLen:]
	msg[0] = icmpNA
	msg[4] = flags
	copy(msg[8:24], t16[:])
	msg[24], msg[25] = optTargetLLAddr, 1
	copy(msg[26:32], mac)
	binary.BigEndian.PutUint16(msg[2:4], icmpv6Checksum(src, dst, msg))
	return b
}

// icmpv6Checksum is the Internet checksum over the IPv6 pseudo-header and
// msg (whose checksum field counts as written: 0 when building, the sum
// checks to 0 when verifying).
func icmpv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	s16, d16 := src.As16(), dst.As16()
	add(s16[:])
	add(d16[:])
	var l [8]byte
	binary.BigEndian.PutUint32(l[0:4], uint32(len(msg)))
	l[7] = protocolICMPv6
	add(l[:])
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// naReply answers q from an interface with mac, whose link-local address
// is ll (the target itself when it has none).
func naReply(q nsQuestion, mac net.HardwareAddr, ll netip.Addr) []byte {
	src := ll
	if !src.IsValid() {
		src = q.target
	}
	if !q.srcIP.IsUnspecified() {
		return naFrame(q.srcMAC, mac, src, q.srcIP, q.target, naFlagSolicited|naFlagOverride)
	}
	// Duplicate address detection: tell every node.
	return naFrame(allNodesMAC, mac, src, netip.MustParseAddr(allNodesGroup), q.target, naFlagOverride)
}

// unsolicitedNA is the failover announcement: target is at mac now, to
// every node, overriding their cache entries.
func unsolicitedNA(mac net.HardwareAddr, ll, target netip.Addr) []byte {
	src := ll
	if !src.IsValid() {
		src = target
	}
	return naFrame(allNodesMAC, mac, src, netip.MustParseAddr(allNodesGroup), target, naFlagOverride)
}

// ndpResponder answers neighbour solicitations for a set of IPv6 addresses
// on one interface from a raw AF_PACKET socket, as arpResponder does ARP.
// The socket takes the interface's multicast (the solicitations go to each
// address's solicited-node group, which no local address joined) and
// carries a BPF filter (nsFilter) so that it receives neighbour
// solicitations only.
type ndpResponder struct {
	*rawSocket
	ll netip.Addr // the interface's link-local address, the answers' source
}

func newNDPResponder(ifc *net.Interface, ll netip.Addr, log *slog.Logger) (*ndpResponder, error) {
	filter, err := nsFilter()
	if err != nil {
		return nil, err
	}
	rs, err := openRawSocket(ifc, ethTypeIPv6, filter, log)
	if err != nil {
		return nil, err
	}
	mreq := &unix.PacketMreq{Ifindex: int32(ifc.Index), Type: unix.PACKET_MR_ALLMULTI}
	if err := unix.SetsockoptPacketMreq(rs.fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, mreq); err != nil {
		unix.Close(rs.fd)
		return nil, fmt.Errorf("receiving multicast on %s for NDP: %w", ifc.Name, err)
	}
	return &ndpResponder{rawSocket: rs, ll: ll}, nil
}

func (r *ndpResponder) run(ctx context.Context) {
	r.serve(ctx, func(frame []byte) {
		q, ok := parseNS(frame)
		if !ok || !r.answers(q.target) {
			return
		}
		na := naReply(q, r.ifc.HardwareAddr, r.ll)
		if err := r.send(ethTypeIPv6, net.HardwareAddr(na[0:6]), na); err != nil {
			r.log.Warn("answering NDP", "interface", r.ifc.Name, "ip", q.target, "err", err)
		}
	})
}

// gratuitous sends the unsolicited neighbour advertisement of a takeover.
func (r *ndpResponder) gratuitous(ip netip.Addr) error {
	return r.send(ethTypeIPv6, allNodesMAC, unsolicitedNA(r.ifc.HardwareAddr, r.ll, ip))
}
