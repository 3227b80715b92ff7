package localcloud

import (
	"fmt"
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// PoolConfig is one address pool as the configuration writes it (the
// server's loadBalancer.pools, handed to the plugin).
type PoolConfig struct {
	// Name identifies the pool (the keelson.io/load-balancer-pool annotation).
	Name string `json:"name"`
	// Addresses are CIDRs ("192.168.1.240/28", "fd00:1::/120") or
	// inclusive ranges ("192.168.1.240-192.168.1.250").
	Addresses []string `json:"addresses"`
	// NodeSelector limits the pool to Services that can be served by at
	// least one eligible node with these labels.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
}

// ipRange is an inclusive range of one family.
type ipRange struct{ first, last netip.Addr }

func (r ipRange) contains(a netip.Addr) bool {
	return a.BitLen() == r.first.BitLen() && r.first.Compare(a) <= 0 && a.Compare(r.last) <= 0
}

func (r ipRange) overlaps(o ipRange) bool {
	return r.first.BitLen() == o.first.BitLen() && r.first.Compare(o.last) <= 0 && o.first.Compare(r.last) <= 0
}

// pool is a parsed PoolConfig.
type pool struct {
	name     string
	ranges   []ipRange
	selector labels.Selector
}

// parseRange reads a CIDR or FIRST-LAST range.
func parseRange(s string) (ipRange, error) {
	s = strings.TrimSpace(s)
	if first, last, ok := strings.Cut(s, "-"); ok {
		f, err1 := netip.ParseAddr(strings.TrimSpace(first))
		l, err2 := netip.ParseAddr(strings.TrimSpace(last))
		if err1 != nil || err2 != nil || f.Zone() != "" || l.Zone() != "" {
			return ipRange{}, fmt.Errorf("%q is not a range FIRST-LAST of two IP addresses", s)
		}
		f, l = f.Unmap(), l.Unmap()
		if f.BitLen() != l.BitLen() || l.Less(f) {
			return ipRange{}, fmt.Errorf("range %q must go from a lower to a higher address of one family", s)
		}
		return ipRange{f, l}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return ipRange{}, fmt.Errorf("%q is neither a CIDR (192.168.1.240/28) nor a range (192.168.1.240-192.168.1.250)", s)
	}
	if p.Masked() != p {
		return ipRange{}, fmt.Errorf("%q has host bits set; write %s", s, p.Masked())
	}
	return ipRange{p.Addr(), lastAddr(p)}, nil
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// parsePools checks and parses the configured pools; errors name the key.
func parsePools(cfgs []PoolConfig) ([]pool, error) {
	var out []pool
	seen := map[string]bool{}
	for i, c := range cfgs {
		key := fmt.Sprintf("pools[%d]", i)
		if c.Name == "" {
			return nil, fmt.Errorf("%s.name: is empty; name every pool", key)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("%s.name: %q is used by an earlier pool; pool names must be unique", key, c.Name)
		}
		seen[c.Name] = true
		if len(c.Addresses) == 0 {
			return nil, fmt.Errorf("%s.addresses: pool %q lists no addresses; add a CIDR or a FIRST-LAST range", key, c.Name)
		}
		sel, err := labels.ValidatedSelectorFromSet(c.NodeSelector)
		if err != nil {
			return nil, fmt.Errorf("%s.nodeSelector: %w", key, err)
		}
		p := pool{name: c.Name, selector: sel}
		for j, a := range c.Addresses {
			r, err := parseRange(a)
			if err != nil {
				return nil, fmt.Errorf("%s.addresses[%d]: %w", key, j, err)
			}
			for _, q := range out {
				for _, qr := range q.ranges {
					if qr.overlaps(r) {
						return nil, fmt.Errorf("%s.addresses[%d]: %q overlaps pool %q; pools must not share addresses", key, j, a, q.name)
					}
				}
			}
			p.ranges = append(p.ranges, r)
		}
		out = append(out, p)
	}
	return out, nil
}

// contains reports whether a is one of the pool's addresses.
func (p pool) contains(a netip.Addr) bool {
	for _, r := range p.ranges {
		if r.contains(a) {
			return true
		}
	}
	return false
}

// servedBy reports whether any of nodes matches the pool's selector. A
// pool without one is always usable: handing out an address does not need
// a node, as MetalLB's allocation does not; serving it does.
func (p pool) servedBy(nodes []*v1.Node) bool {
	if p.selector.Empty() {
		return true
	}
	for _, n := range nodes {
		if p.selector.Matches(labels.Set(n.Labels)) {
			return true
		}
	}
	return false
}

// firstFree is the lowest address of the pool in family bits (32 or 128)
// for which taken is false. Scanning stops at the first free address, so
// it costs at most one step per taken address, whatever the pool's size.
func (p pool) firstFree(bits int, taken func(netip.Addr) bool) (netip.Addr, bool) {
	for _, r := range p.ranges {
		if r.first.BitLen() != bits {
			continue
		}
		for a := r.first; a.IsValid() && a.Compare(r.last) <= 0; a = a.Next() {
			if !taken(a) {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}
