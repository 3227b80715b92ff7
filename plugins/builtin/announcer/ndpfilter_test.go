package announcer

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ipv6Frame builds an Ethernet frame with an IPv6 header (next header
// nh, hop limit hop) and payload.
func ipv6Frame(nh, hop byte, payload []byte) []byte {
	b := make([]byte, ethHeaderLen+ipv6HeaderLen, ethHeaderLen+ipv6HeaderLen+len(payload))
	copy(b[0:6], net.HardwareAddr{2, 0, 0, 0, 0, 2})
	copy(b[6:12], net.HardwareAddr{2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(b[12:14], ethTypeIPv6)
	ip := b[ethHeaderLen:]
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(payload)))
	ip[6], ip[7] = nh, hop
	return append(b, payload...)
}

func TestNSFilterPassesSolicitationsOnly(t *testing.T) {
	raw, err := nsFilter()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(disassemble(t, raw))
	if err != nil {
		t.Fatalf("the filter does not load: %v", err)
	}
	client := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	src, lb := netip.MustParseAddr("fd00:99::15"), netip.MustParseAddr("fd00:99::200")
	ns := nsFrame(client, src, lb)
	lowHop := bytes.Clone(ns)
	lowHop[offHopLimit] = 64
	echo := ipv6Frame(protocolICMPv6, 64, []byte{128, 0, 0, 0, 0, 1, 0, 1})
	tcp := ipv6Frame(6, 64, make([]byte, 20))
	// A TCP segment whose byte at the ICMPv6 type's offset happens to be
	// 135, with hop limit 255: the next header still keeps it out.
	tcp255 := ipv6Frame(6, ndpHopLimit, append([]byte{icmpNS}, make([]byte, 19)...))
	arp := arpFrame(arpRequest, broadcastMAC, client, netip.MustParseAddr("10.99.1.50"), make(net.HardwareAddr, 6), netip.MustParseAddr("10.99.1.200"))
	for _, c := range []struct {
		name  string
		frame []byte
		pass  bool
	}{
		{"neighbour solicitation", ns, true},
		{"neighbour advertisement", naReply(nsQuestion{srcMAC: client, srcIP: src, target: lb}, client, netip.Addr{}), false},
		{"unsolicited advertisement", unsolicitedNA(client, netip.Addr{}, lb), false},
		{"solicitation with hop limit 64", lowHop, false},
		{"ICMPv6 echo request", echo, false},
		{"TCP over IPv6", tcp, false},
		{"TCP over IPv6, hop limit 255, 135 where the ICMPv6 type would be", tcp255, false},
		{"ARP request", arp, false},
		{"truncated solicitation", ns[:offICMPType], false},
	} {
		n, err := vm.Run(c.frame)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := n > 0; got != c.pass {
			t.Errorf("%s: filter kept %d bytes; want passed=%v", c.name, n, c.pass)
		}
		if c.pass && n < len(c.frame) {
			t.Errorf("%s: filter kept %d of %d bytes; want the whole frame", c.name, n, len(c.frame))
		}
	}
}

func disassemble(t *testing.T, raw []bpf.RawInstruction) []bpf.Instruction {
	t.Helper()
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("the assembled filter does not disassemble: %v", prog)
	}
	return prog
}

// TestNSFilterLoadsInKernel attaches the filter to an AF_PACKET socket
// bound to no protocol (it receives nothing): the kernel's verifier
// accepts the program. It needs CAP_NET_RAW.
func TestNSFilterLoadsInKernel(t *testing.T) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no raw socket (needs CAP_NET_RAW): %v", err)
	}
	defer unix.Close(fd)
	raw, err := nsFilter()
	if err != nil {
		t.Fatal(err)
	}
	if err := attachFilter(fd, raw); err != nil {
		t.Fatal(err)
	}
	bad := []bpf.RawInstruction{{Op: 0xffff}}
	if err := attachFilter(fd, bad); err == nil {
		t.Error("the kernel took an invalid program: this test checks nothing")
	}
}
