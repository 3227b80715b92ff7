package servicenet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/keelson/keelson/agent/internal/ruleset"
)

// addDNSAddresses puts the cluster DNS addresses on link as host routes,
// so that the node itself answers pods sending to them.
func addDNSAddresses(link string, addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return nil
	}
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("network: cluster DNS device %q: %w", link, err)
	}
	for _, a := range addrs {
		if err := netlink.AddrReplace(l, dnsAddr(a)); err != nil {
			return fmt.Errorf("network: adding cluster DNS address %s to %s: %w", a, link, err)
		}
	}
	return nil
}

func removeDNSAddresses(link string, addrs []netip.Addr) error {
	l, err := netlink.LinkByName(link)
	if err != nil || len(addrs) == 0 {
		return nil // nothing can be on a device that is not there
	}
	var errs []error
	for _, a := range addrs {
		if err := netlink.AddrDel(l, dnsAddr(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("network: removing cluster DNS address %s from %s: %w", a, link, err))
		}
	}
	return errors.Join(errs...)
}

func dnsAddr(a netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
}

// podMasquerade NATs traffic from pods to destinations outside the cluster
// CIDRs to the node's address (the world cannot route pod addresses),
// leaving pod-to-pod traffic untouched.
type podMasquerade struct {
	cidrs []netip.Prefix
}

const chainPodMasq = "KEELSON-POD-MASQ"

func newPodMasquerade(cidrs []netip.Prefix) *podMasquerade { return &podMasquerade{cidrs: cidrs} }

func podMasqJump(cidr netip.Prefix) ruleset.Jump {
	return ruleset.Jump{Table: "nat", Chain: "POSTROUTING", Args: []string{"-s", cidr.Masked().String(),
		"-m", "comment", "--comment", "keelson-pod-egress", "-j", chainPodMasq}}
}

// apply installs the chain and its jumps, one family at a time.
func (m *podMasquerade) apply(ctx context.Context) error {
	for _, cidr := range m.cidrs {
		fam, multicast := ruleset.IPv4, "224.0.0.0/4"
		if cidr.Addr().Is6() {
			fam, multicast = ruleset.IPv6, "ff00::/8"
		}
		ipt, err := ruleset.NewIPTables(fam)
		if err != nil {
			return fmt.Errorf("network: pod masquerade: %w", err)
		}
		rs := ruleset.New()
		c := rs.Chain("nat", chainPodMasq)
		for _, other := range m.cidrs {
			if other.Addr().Is6() == cidr.Addr().Is6() {
				c.Add("-d", other.Masked().String(), "-j", "RETURN")
			}
		}
		c.Add("-d", multicast, "-j", "RETURN")
		masq := []string{"-j", "MASQUERADE"}
		if ipt.HasRandomFully() {
			masq = append(masq, "--random-fully")
		}
		c.Add(masq...)
		w := ruleset.NewWriter(func(name string) bool { return name == chainPodMasq })
		if err := ipt.Restore(ctx, w.Payload(rs, nil).Data); err != nil {
			return fmt.Errorf("network: pod masquerade: %w", err)
		}
		if err := ipt.EnsureJump(podMasqJump(cidr)); err != nil {
			return fmt.Errorf("network: pod masquerade: %w", err)
		}
	}
	return nil
}

// cleanupPodMasquerade removes the chain and every jump to it.
func cleanupPodMasquerade(ctx context.Context) error {
	var errs []error
	for _, fam := range []ruleset.Family{ruleset.IPv4, ruleset.IPv6} {
		ipt, err := ruleset.NewIPTables(fam)
		if err != nil {
			continue
		}
		jumps, err := ipt.JumpsTo("nat", "POSTROUTING", chainPodMasq)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := ipt.Cleanup(ctx, jumps, []string{"nat"}, func(n string) bool { return n == chainPodMasq }); err != nil {
			errs = append(errs, fmt.Errorf("network: pod masquerade cleanup: %w", err))
		}
	}
	return errors.Join(errs...)
}
