package announcer

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"
)

// speaker announces a set of IPs on this node: an ARP (IPv4) or NDP
// (IPv6) responder per interface whose subnet holds an announced address
// (the segment the clients of that address are on), a gratuitous ARP or
// unsolicited neighbour advertisement on every address it takes over.
type speaker struct {
	log *slog.Logger
	// interfaces lists the node's interfaces and their prefixes (injected
	// so planning is testable).
	interfaces func() ([]ifaceAddrs, error)
	// regratuitous is when a takeover's gratuitous ARP is repeated, in
	// case the first one was lost.
	regratuitous time.Duration

	responders map[string]*runningResponder
}

// responder answers address resolution for a set of addresses on one
// interface (arpResponder, ndpResponder).
type responder interface {
	set(ips map[netip.Addr]bool) []netip.Addr
	answers(ip netip.Addr) bool
	run(ctx context.Context)
	gratuitous(ip netip.Addr) error
}

type runningResponder struct {
	responder
	cancel context.CancelFunc
}

// ifaceAddrs is an interface and its IP prefixes.
type ifaceAddrs struct {
	ifc      net.Interface
	prefixes []netip.Prefix
}

func systemInterfaces() ([]ifaceAddrs, error) {
	ifcs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	var out []ifaceAddrs
	for _, ifc := range ifcs {
		if ifc.Flags&net.FlagLoopback != 0 || ifc.Flags&net.FlagUp == 0 || len(ifc.HardwareAddr) != 6 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		ia := ifaceAddrs{ifc: ifc}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				ia.prefixes = append(ia.prefixes, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()))
			}
		}
		out = append(out, ia)
	}
	return out, nil
}

// linkLocal is the interface's IPv6 link-local address, if any.
func (ia ifaceAddrs) linkLocal() netip.Addr {
	for _, p := range ia.prefixes {
		if p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// byInterface places each address on the interfaces whose subnet (of its
// family, never link-local) holds it, keyed INTERFACE/arp or
// INTERFACE/ndp; the rest are returned as unplaced.
func byInterface(ifcs []ifaceAddrs, ips []netip.Addr) (map[string]map[netip.Addr]bool, []netip.Addr) {
	out := map[string]map[netip.Addr]bool{}
	var unplaced []netip.Addr
	for _, ip := range ips {
		placed := false
		for _, ia := range ifcs {
			onLink := func(p netip.Prefix) bool {
				return p.Addr().Is4() == ip.Is4() && !p.Addr().IsLinkLocalUnicast() && p.Contains(ip)
			}
			if slices.ContainsFunc(ia.prefixes, onLink) {
				key := ia.ifc.Name + "/arp"
				if ip.Is6() {
					key = ia.ifc.Name + "/ndp"
				}
				if out[key] == nil {
					out[key] = map[netip.Addr]bool{}
				}
				out[key][ip] = true
				placed = true
			}
		}
		if !placed {
			unplaced = append(unplaced, ip)
		}
	}
	return out, unplaced
}

// apply makes the node announce exactly ips; it returns the addresses it
// cannot announce.
func (s *speaker) apply(ctx context.Context, ips []netip.Addr) ([]netip.Addr, error) {
	ifcs, err := s.interfaces()
	if err != nil {
		return nil, err
	}
	want, unplaced := byInterface(ifcs, ips)
	for key, r := range s.responders {
		if _, ok := want[key]; !ok {
			r.cancel()
			delete(s.responders, key)
			s.log.Info("stopped answering address resolution", "responder", key)
		}
	}
	var errs []error
	for _, ia := range ifcs {
		for _, proto := range []string{"arp", "ndp"} {
			key := ia.ifc.Name + "/" + proto
			set, ok := want[key]
			if !ok {
				continue
			}
			r := s.responders[key]
			if r == nil {
				resp, err := newResponder(ia, proto, s.log)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				rctx, cancel := context.WithCancel(ctx)
				r = &runningResponder{responder: resp, cancel: cancel}
				s.responders[key] = r
				go resp.run(rctx)
			}
			for _, ip := range r.set(set) {
				s.takeOver(ctx, r.responder, key, ip)
			}
		}
	}
	if len(errs) > 0 {
		return unplaced, fmt.Errorf("announcing: %v", errs)
	}
	return unplaced, nil
}

func newResponder(ia ifaceAddrs, proto string, log *slog.Logger) (responder, error) {
	ifc := ia.ifc
	if proto == "ndp" {
		return newNDPResponder(&ifc, ia.linkLocal(), log)
	}
	return newARPResponder(&ifc, log)
}

// takeOver sends the gratuitous ARP (unsolicited neighbour advertisement)
// for ip now and once more a little later, while this node still
// announces it.
func (s *speaker) takeOver(ctx context.Context, r responder, key string, ip netip.Addr) {
	s.log.Info("announcing", "ip", ip, "responder", key)
	if err := r.gratuitous(ip); err != nil {
		s.log.Warn("announcing a takeover", "ip", ip, "responder", key, "err", err)
	}
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.regratuitous):
		}
		if r.answers(ip) {
			_ = r.gratuitous(ip)
		}
	}()
}

// stop ends every responder.
func (s *speaker) stop() {
	for name, r := range s.responders {
		r.cancel()
		delete(s.responders, name)
	}
}
