package proxy

import (
	"log/slog"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
)

// conntrackCleaner deletes connection-tracking entries that new rules would
// not reach. TCP needs none of this (a new connection is a new entry), but a
// UDP or SCTP "connection" lives on as long as packets flow: entries that
// point to a removed endpoint would keep sending there, and entries created
// while a service had no endpoints (rejected, un-NATed) would keep bypassing
// the DNAT once endpoints appear.
type conntrackCleaner struct {
	family v1.IPFamily
	// prev holds, per service (namespace/name), its ports as last seen.
	prev   map[string]map[string]ctPort
	delete func(f netlink.CustomConntrackFilter) (uint, error)
}

// ctPort is what one service port looked like at the last sync.
type ctPort struct {
	proto    uint8
	dests    []netip.AddrPort // cluster, external and load-balancer addresses
	nodePort uint16
	eps      map[netip.AddrPort]bool // endpoints in use
}

func newConntrackCleaner(family v1.IPFamily) *conntrackCleaner {
	fam := netlink.FAMILY_V4
	if family == v1.IPv6Protocol {
		fam = netlink.FAMILY_V6
	}
	return &conntrackCleaner{family: family, prev: map[string]map[string]ctPort{}, delete: func(f netlink.CustomConntrackFilter) (uint, error) {
		return netlink.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.InetFamily(fam), f)
	}}
}

// ctFilter matches the entries to delete.
type ctFilter struct {
	// staleEndpoints: entries NATed to these endpoints.
	staleEndpoints map[uint8]map[netip.AddrPort]bool
	// revived: entries addressed to these destinations (services that got
	// their first endpoints), and to these node ports.
	revivedDests     map[uint8]map[netip.AddrPort]bool
	revivedNodePorts map[uint8]map[uint16]bool
}

func (f *ctFilter) empty() bool {
	return len(f.staleEndpoints) == 0 && len(f.revivedDests) == 0 && len(f.revivedNodePorts) == 0
}

func (f *ctFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	proto := flow.Forward.Protocol
	origDst, ok1 := netip.AddrFromSlice(flow.Forward.DstIP)
	replySrc, ok2 := netip.AddrFromSlice(flow.Reverse.SrcIP)
	if !ok1 || !ok2 {
		return false
	}
	origDst, replySrc = origDst.Unmap(), replySrc.Unmap()
	replyFrom := netip.AddrPortFrom(replySrc, flow.Reverse.SrcPort)
	if f.staleEndpoints[proto][replyFrom] && origDst != replySrc {
		return true
	}
	if f.revivedDests[proto][netip.AddrPortFrom(origDst, flow.Forward.DstPort)] {
		return true
	}
	return f.revivedNodePorts[proto][flow.Forward.DstPort]
}

func add[K comparable](m map[uint8]map[K]bool, proto uint8, k K) {
	if m[proto] == nil {
		m[proto] = map[K]bool{}
	}
	m[proto][k] = true
}

// afterSync compares the ports of the services changed since it last ran
// with what they were then and deletes what became stale. Failures are
// logged: stale entries expire by themselves, so this is an improvement,
// not a condition of correctness.
func (c *conntrackCleaner) afterSync(v *portView, changed map[string]bool, log *slog.Logger) {
	f := &ctFilter{staleEndpoints: map[uint8]map[netip.AddrPort]bool{},
		revivedDests: map[uint8]map[netip.AddrPort]bool{}, revivedNodePorts: map[uint8]map[uint16]bool{}}
	for key := range changed {
		prev, cur := c.prev[key], ctPorts(v.bySvc[key])
		for id, st := range cur {
			if p, known := prev[id]; len(st.eps) > 0 && (!known || len(p.eps) == 0) {
				for _, d := range st.dests {
					add(f.revivedDests, st.proto, d)
				}
				if st.nodePort != 0 {
					add(f.revivedNodePorts, st.proto, st.nodePort)
				}
			}
		}
		for id, p := range prev {
			for ep := range p.eps {
				if !cur[id].eps[ep] {
					add(f.staleEndpoints, p.proto, ep)
				}
			}
		}
		if len(cur) == 0 {
			delete(c.prev, key)
		} else {
			c.prev[key] = cur
		}
	}
	if f.empty() {
		return
	}
	n, err := c.delete(f)
	if err != nil {
		log.Warn("deleting stale conntrack entries", "family", c.family, "err", err)
		return
	}
	if n > 0 {
		log.Debug("deleted stale conntrack entries", "family", c.family, "entries", n)
	}
}

// ctPorts is what the cleaner remembers of one service's ports, by port:
// those of protocols whose entries need cleaning.
func ctPorts(ports []ServicePort) map[string]ctPort {
	out := map[string]ctPort{}
	for i := range ports {
		sp := &ports[i]
		proto := protoNumber(sp.Protocol)
		if proto == 0 {
			continue
		}
		st := ctPort{proto: proto, nodePort: uint16(sp.NodePort), eps: map[netip.AddrPort]bool{}}
		st.dests = append(st.dests, netip.AddrPortFrom(sp.ClusterIP, uint16(sp.Port)))
		for _, a := range externalAddrs(sp) {
			st.dests = append(st.dests, netip.AddrPortFrom(a, uint16(sp.Port)))
		}
		for _, ep := range append(sp.ClusterEndpoints(), sp.LocalEndpoints()...) {
			st.eps[ep.Addr] = true
		}
		out[sp.id()] = st
	}
	return out
}

// protoNumber is the IP protocol number of protocols whose conntrack
// entries need cleaning; 0 for TCP.
func protoNumber(p v1.Protocol) uint8 {
	switch p {
	case v1.ProtocolUDP:
		return unix.IPPROTO_UDP
	case v1.ProtocolSCTP:
		return unix.IPPROTO_SCTP
	}
	return 0
}
