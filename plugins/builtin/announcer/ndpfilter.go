package announcer

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Offsets into an Ethernet frame carrying IPv6 (no VLAN tag: the kernel
// strips it before AF_PACKET sockets see the frame).
const (
	offEthType   = 12
	offNextHdr   = ethHeaderLen + 6
	offHopLimit  = ethHeaderLen + 7
	offICMPType  = ethHeaderLen + ipv6HeaderLen
	filterAccept = 0x40000 // bytes of a frame kept: all of it
)

// nsFilter is the classic BPF program attached to the NDP socket: the
// kernel hands the responder only IPv6 frames whose next header is ICMPv6
// (no extension headers, as NDP is sent), hop limit 255 and ICMPv6 type
// neighbour solicitation. Everything else the interface carries (the
// Service traffic itself, other ICMPv6) is dropped in the kernel instead
// of being copied to this process. parseNS still checks every field.
func nsFilter() ([]bpf.RawInstruction, error) {
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offEthType, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ethTypeIPv6, SkipTrue: 6},
		bpf.LoadAbsolute{Off: offNextHdr, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protocolICMPv6, SkipTrue: 4},
		bpf.LoadAbsolute{Off: offHopLimit, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ndpHopLimit, SkipTrue: 2},
		bpf.LoadAbsolute{Off: offICMPType, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpNS, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: filterAccept},
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assembling the NDP socket filter: %w", err)
	}
	return raw, nil
}
