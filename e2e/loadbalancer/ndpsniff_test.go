package loadbalancer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// naSeen is one neighbour advertisement the sniffer saw for its target.
type naSeen struct {
	mac        string // Ethernet source
	solicited  bool
	override   bool
	toAllNodes bool // sent to ff02::1
	receivedAt time.Time
}

// naSniffer records every neighbour advertisement for one address that
// reaches eth0 of a network namespace, from a raw socket opened inside it.
type naSniffer struct {
	fd     int
	target netip.Addr
	done   chan struct{}

	mu   sync.Mutex
	seen []naSeen
}

// sniffNA starts recording in namespace ns; it stops when the test ends.
func sniffNA(t testing.TB, ns string, target netip.Addr) *naSniffer {
	t.Helper()
	fd, err := packetSocketIn(ns, "eth0")
	if err != nil {
		t.Fatalf("sniffing neighbour advertisements in %s: %v", ns, err)
	}
	s := &naSniffer{fd: fd, target: target, done: make(chan struct{})}
	go s.read()
	t.Cleanup(s.stop)
	return s
}

// packetSocketIn opens an AF_PACKET socket for IPv6 frames on ifname
// inside namespace ns (a socket stays in the namespace it was made in).
func packetSocketIn(ns, ifname string) (int, error) {
	runtime.LockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	defer unix.Close(self)
	target, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	fd, err := openPacketSocket(ifname)
	if back := unix.Setns(self, unix.CLONE_NEWNET); back != nil {
		// This thread stays in the wrong namespace: leave it locked so
		// that it ends with this goroutine.
		return -1, errors.Join(err, back)
	}
	runtime.UnlockOSThread()
	return fd, err
}

func openPacketSocket(ifname string) (int, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return -1, err
	}
	v := uint16(unix.ETH_P_IPV6)
	proto := int(v<<8 | v>>8) // network byte order
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifc.Index}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (s *naSniffer) read() {
	defer unix.Close(s.fd)
	buf := make([]byte, 1600)
	t16 := s.target.As16()
	for {
		select {
		case <-s.done:
			return
		default:
		}
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			continue
		}
		f := buf[:n]
		// Ethernet 14, IPv6 40 (next header ICMPv6), NA: type 136, flags, target.
		if len(f) < 78 || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_IPV6 || f[20] != 58 || f[54] != 136 || !bytes.Equal(f[62:78], t16[:]) {
			continue
		}
		s.mu.Lock()
		s.seen = append(s.seen, naSeen{
			mac: net.HardwareAddr(f[6:12]).String(), solicited: f[58]&0x40 != 0, override: f[58]&0x20 != 0,
			toAllNodes: bytes.Equal(f[38:54], net.ParseIP("ff02::1").To16()), receivedAt: time.Now(),
		})
		s.mu.Unlock()
	}
}

func (s *naSniffer) stop() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}

// advertisements returns what was seen so far.
func (s *naSniffer) advertisements() []naSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]naSeen(nil), s.seen...)
}

// since returns what was seen from t on.
func (s *naSniffer) since(t time.Time) []naSeen {
	var out []naSeen
	for _, a := range s.advertisements() {
		if !a.receivedAt.Before(t) {
			out = append(out, a)
		}
	}
	return out
}

func (a naSeen) String() string {
	return fmt.Sprintf("{from %s solicited=%v override=%v all-nodes=%v}", a.mac, a.solicited, a.override, a.toAllNodes)
}
