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

// speaker announces a set of IPs on this node: one ARP responder per
// interface whose IPv4 subnet holds an announced address (the segment the
// clients of that address are on), a gratuitous ARP on every address it
// takes over.
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

type runningResponder struct {
	*arpResponder
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

// byInterface places each IPv4 address on the interfaces whose subnet
// holds it; the rest are returned as unplaced (IPv6, or no such subnet).
func byInterface(ifcs []ifaceAddrs, ips []netip.Addr) (map[string]map[netip.Addr]bool, []netip.Addr) {
	out := map[string]map[netip.Addr]bool{}
	var unplaced []netip.Addr
	for _, ip := range ips {
		placed := false
		for _, ia := range ifcs {
			if ip.Is4() && slices.ContainsFunc(ia.prefixes, func(p netip.Prefix) bool { return p.Addr().Is4() && p.Contains(ip) }) {
				if out[ia.ifc.Name] == nil {
					out[ia.ifc.Name] = map[netip.Addr]bool{}
				}
				out[ia.ifc.Name][ip] = true
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
	for name, r := range s.responders {
		if _, ok := want[name]; !ok {
			r.cancel()
			delete(s.responders, name)
			s.log.Info("stopped answering ARP", "interface", name)
		}
	}
	var errs []error
	for _, ia := range ifcs {
		set, ok := want[ia.ifc.Name]
		if !ok {
			continue
		}
		r := s.responders[ia.ifc.Name]
		if r == nil {
			ifc := ia.ifc
			ar, err := newARPResponder(&ifc, s.log)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			rctx, cancel := context.WithCancel(ctx)
			r = &runningResponder{arpResponder: ar, cancel: cancel}
			s.responders[ia.ifc.Name] = r
			go ar.run(rctx)
		}
		for _, ip := range r.set(set) {
			s.takeOver(ctx, r.arpResponder, ip)
		}
	}
	if len(errs) > 0 {
		return unplaced, fmt.Errorf("announcing: %v", errs)
	}
	return unplaced, nil
}

// takeOver sends the gratuitous ARP for ip now and once more a little
// later, while this node still announces it.
func (s *speaker) takeOver(ctx context.Context, r *arpResponder, ip netip.Addr) {
	s.log.Info("announcing", "ip", ip, "interface", r.ifc.Name)
	if err := r.gratuitous(ip); err != nil {
		s.log.Warn("gratuitous ARP", "ip", ip, "interface", r.ifc.Name, "err", err)
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
