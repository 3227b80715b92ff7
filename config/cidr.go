package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseClusterCIDRs parses a cluster CIDR setting: one CIDR, or an IPv4 and
// an IPv6 one separated by a comma (dual-stack), each a network address
// (no host bits set).
func ParseClusterCIDRs(s string) ([]netip.Prefix, error) {
	return parseCIDRPair(s, DefaultClusterCIDR)
}

// ParseServiceCIDRs parses the service range: one CIDR, or one IPv4 and one
// IPv6 CIDR separated by a comma (dual-stack Services); the first is the
// primary family. kube-apiserver takes an IPv6 range of /108 or longer
// only, so a wider one is refused here, before it fails to start.
func ParseServiceCIDRs(s string) ([]netip.Prefix, error) {
	out, err := parseCIDRPair(s, "10.43.0.0/16")
	if err != nil {
		return nil, err
	}
	for _, p := range out {
		if p.Addr().Is6() && p.Bits() < 108 {
			return nil, fmt.Errorf("%q is wider than /108, the widest IPv6 service range kube-apiserver allocates from; use a /108 to /120 such as fd43::/108", p)
		}
	}
	return out, nil
}

// parseCIDRPair parses one CIDR or an IPv4 and an IPv6 CIDR separated by
// a comma; example is shown in errors.
func parseCIDRPair(s, example string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("must not be empty; the default is %s", example)
	}
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return nil, fmt.Errorf("%q has %d CIDRs; give one, or one IPv4 and one IPv6 CIDR separated by a comma", s, len(parts))
	}
	var out []netip.Prefix
	for _, part := range parts {
		part = strings.TrimSpace(part)
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR such as %s", part, example)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("%q has host bits set; use the network address %s", part, p.Masked())
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("%q is an IPv4-mapped IPv6 CIDR; write it as IPv4", part)
		}
		out = append(out, p)
	}
	if len(out) == 2 && out[0].Addr().Is4() == out[1].Addr().Is4() {
		return nil, fmt.Errorf("%q has two CIDRs of the same IP family; dual-stack takes one IPv4 and one IPv6 CIDR", s)
	}
	return out, nil
}

// ServiceIP is the n-th address of a service range (the first range of a
// dual-stack setting): the cluster DNS server's is the tenth, as in k3s.
func ServiceIP(serviceCIDR string, n int) (netip.Addr, error) {
	first, _, _ := strings.Cut(serviceCIDR, ",")
	p, err := netip.ParsePrefix(strings.TrimSpace(first))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not a CIDR such as 10.43.0.0/16", serviceCIDR)
	}
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	if !p.Contains(a) {
		return netip.Addr{}, fmt.Errorf("%s has no address number %d", p, n)
	}
	return a, nil
}
