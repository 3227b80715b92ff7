package announcer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The ARP frame this responder reads and writes: Ethernet II, then an
// IPv4-over-Ethernet ARP packet (RFC 826).
const (
	ethHeaderLen = 14
	arpLen       = 28
	arpRequest   = 1
	arpReply     = 2
)

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// arpFrame builds an ARP frame from sender (mac, ip) to target (mac, ip),
// sent to dst.
func arpFrame(op uint16, dst, senderMAC net.HardwareAddr, senderIP netip.Addr, targetMAC net.HardwareAddr, targetIP netip.Addr) []byte {
	b := make([]byte, ethHeaderLen+arpLen)
	copy(b[0:6], dst)
	copy(b[6:12], senderMAC)
	binary.BigEndian.PutUint16(b[12:14], unix.ETH_P_ARP)
	a := b[ethHeaderLen:]
	binary.BigEndian.PutUint16(a[0:2], 1) // Ethernet
	binary.BigEndian.PutUint16(a[2:4], unix.ETH_P_IP)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	copy(a[8:14], senderMAC)
	s4, t4 := senderIP.As4(), targetIP.As4()
	copy(a[14:18], s4[:])
	copy(a[18:24], targetMAC)
	copy(a[24:28], t4[:])
	return b
}

// arpQuestion is a parsed ARP request: who has target, tell sender.
type arpQuestion struct {
	senderMAC net.HardwareAddr
	senderIP  netip.Addr
	target    netip.Addr
}

// parseARPRequest reads an Ethernet frame; ok is false for anything but an
// IPv4-over-Ethernet ARP request.
func parseARPRequest(b []byte) (q arpQuestion, ok bool) {
	if len(b) < ethHeaderLen+arpLen || binary.BigEndian.Uint16(b[12:14]) != unix.ETH_P_ARP {
		return q, false
	}
	a := b[ethHeaderLen:]
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != unix.ETH_P_IP ||
		a[4] != 6 || a[5] != 4 || binary.BigEndian.Uint16(a[6:8]) != arpRequest {
		return q, false
	}
	q.senderMAC = net.HardwareAddr(bytes.Clone(a[8:14]))
	q.senderIP = netip.AddrFrom4([4]byte(a[14:18]))
	q.target = netip.AddrFrom4([4]byte(a[24:28]))
	return q, true
}

// rawSocket is an AF_PACKET socket on one interface for one ethertype,
// with the set of addresses its responder answers for.
type rawSocket struct {
	ifc *net.Interface
	fd  int
	log *slog.Logger

	mu  sync.Mutex
	ips map[netip.Addr]bool
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openRawSocket opens the socket with no protocol (it receives nothing),
// attaches filter (if any), and only then binds it to ethType on ifc, so
// that no frame reaches it unfiltered.
func openRawSocket(ifc *net.Interface, ethType uint16, filter []bpf.RawInstruction, log *slog.Logger) (*rawSocket, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening a raw socket on %s (needs CAP_NET_RAW): %w", ifc.Name, err)
	}
	if err := attachFilter(fd, filter); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("raw socket on %s: %w", ifc.Name, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(ethType), Ifindex: ifc.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binding the raw socket to %s: %w", ifc.Name, err)
	}
	// A receive timeout lets the read loop notice its end.
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("raw socket on %s: %w", ifc.Name, err)
	}
	return &rawSocket{ifc: ifc, fd: fd, log: log, ips: map[netip.Addr]bool{}}, nil
}

// attachFilter sets a classic BPF program on the socket fd (none: nil).
func attachFilter(fd int, filter []bpf.RawInstruction) error {
	if len(filter) == 0 {
		return nil
	}
	ins := make([]unix.SockFilter, len(filter))
	for i, r := range filter {
		ins[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(ins)), Filter: &ins[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("attaching a socket filter: %w", err)
	}
	return nil
}

// set replaces the addresses answered for and returns the new ones.
func (r *rawSocket) set(ips map[netip.Addr]bool) []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	var added []netip.Addr
	for ip := range ips {
		if !r.ips[ip] {
			added = append(added, ip)
		}
	}
	r.ips = ips
	return added
}

func (r *rawSocket) answers(ip netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ips[ip]
}

// serve hands every frame read to handle until ctx ends, then closes the
// socket.
func (r *rawSocket) serve(ctx context.Context, handle func([]byte)) {
	defer unix.Close(r.fd)
	buf := make([]byte, 1500)
	for ctx.Err() == nil {
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			r.log.Warn("reading a raw socket", "interface", r.ifc.Name, "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		handle(buf[:n])
	}
}

func (r *rawSocket) send(ethType uint16, dst net.HardwareAddr, frame []byte) error {
	sa := &unix.SockaddrLinklayer{Protocol: htons(ethType), Ifindex: r.ifc.Index, Halen: 6}
	copy(sa.Addr[:], dst)
	return unix.Sendto(r.fd, frame, 0, sa)
}

// arpResponder answers ARP requests for a set of IPv4 addresses on one
// interface from a raw AF_PACKET socket (CAP_NET_RAW), as MetalLB's layer-2
// mode does: the address is never added to the interface, so the kernel
// neither owns it nor keeps answering for it after this process dies.
type arpResponder struct{ *rawSocket }

func newARPResponder(ifc *net.Interface, log *slog.Logger) (*arpResponder, error) {
	rs, err := openRawSocket(ifc, unix.ETH_P_ARP, nil, log)
	if err != nil {
		return nil, err
	}
	return &arpResponder{rs}, nil
}

// run answers requests until ctx ends.
func (r *arpResponder) run(ctx context.Context) {
	r.serve(ctx, func(frame []byte) {
		q, ok := parseARPRequest(frame)
		if !ok || !r.answers(q.target) {
			return
		}
		reply := arpFrame(arpReply, q.senderMAC, r.ifc.HardwareAddr, q.target, q.senderMAC, q.senderIP)
		if err := r.send(unix.ETH_P_ARP, q.senderMAC, reply); err != nil {
			r.log.Warn("answering ARP", "interface", r.ifc.Name, "ip", q.target, "err", err)
		}
	})
}

// gratuitous tells the segment ip is at this interface now: a broadcast
// ARP request and reply both naming ip as sender and target, which update
// every neighbour's cache entry for it (the failover).
func (r *arpResponder) gratuitous(ip netip.Addr) error {
	mac := r.ifc.HardwareAddr
	for _, op := range []uint16{arpRequest, arpReply} {
		if err := r.send(unix.ETH_P_ARP, broadcastMAC, arpFrame(op, broadcastMAC, mac, ip, broadcastMAC, ip)); err != nil {
			return err
		}
	}
	return nil
}
