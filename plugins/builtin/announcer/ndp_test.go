package announcer

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
)

// nsFrame builds a neighbour solicitation as a Linux client sends it.
func nsFrame(mac net.HardwareAddr, src, target netip.Addr) []byte {
	t16 := target.As16()
	// solicited-node multicast ff02::1:ffXX:XXXX
	dst := netip.AddrFrom16([16]byte{0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t16[13], t16[14], t16[15]})
	b := naFrame(net.HardwareAddr{0x33, 0x33, 0xff, t16[13], t16[14], t16[15]}, mac, src, dst, target, 0)
	msg := b[ethHeaderLen+ipv6HeaderLen:]
	msg[0], msg[24] = icmpNS, optSourceLLAddr
	msg[2], msg[3] = 0, 0
	binary.BigEndian.PutUint16(msg[2:4], icmpv6Checksum(src, dst, msg))
	return b
}

func TestNDPSolicitationAndAdvertisement(t *testing.T) {
	client := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	node := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	lb := netip.MustParseAddr("fd00:99::200")
	ns := nsFrame(client, netip.MustParseAddr("fd00:99::15"), lb)
	q, ok := parseNS(ns)
	if !ok || q.target != lb || !bytes.Equal(q.srcMAC, client) || q.srcIP != netip.MustParseAddr("fd00:99::15") {
		t.Fatalf("parseNS = %+v, %v", q, ok)
	}
	corrupt := bytes.Clone(ns)
	corrupt[len(corrupt)-1] ^= 1
	if _, ok := parseNS(corrupt); ok {
		t.Error("a solicitation with a wrong checksum parsed")
	}
	hop := bytes.Clone(ns)
	hop[ethHeaderLen+7] = 64
	if _, ok := parseNS(hop); ok {
		t.Error("a solicitation with hop limit 64 parsed (RFC 4861 requires 255: it came from off-link)")
	}
	ll := netip.MustParseAddr("fe80::2")
	na := naReply(q, node, ll)
	if _, ok := parseNS(na); ok {
		t.Error("an advertisement parsed as a solicitation")
	}
	msg := na[ethHeaderLen+ipv6HeaderLen:]
	if icmpv6Checksum(ll, q.srcIP, msg) != 0 {
		t.Error("the advertisement's checksum does not verify")
	}
	if !bytes.Equal(na[0:6], client) || msg[0] != icmpNA || msg[4] != naFlagSolicited|naFlagOverride ||
		!bytes.Equal(msg[8:24], lb.AsSlice()) || !bytes.Equal(msg[26:32], node) {
		t.Errorf("advertisement %x", na)
	}
	un := unsolicitedNA(node, ll, lb)
	if !bytes.Equal(un[0:6], allNodesMAC) || un[ethHeaderLen+ipv6HeaderLen+4] != naFlagOverride {
		t.Errorf("unsolicited advertisement %x: want to all nodes, override, not solicited", un)
	}
}
