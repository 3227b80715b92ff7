package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// LoadBalancer configures the addresses the built-in cloud provider (plugin
// localcloud) gives LoadBalancer Services. With no pool, a Service gets
// the ready nodes' own addresses, as k3s's servicelb does.
type LoadBalancer struct {
	// Pools are the address pools, tried in order.
	Pools []LoadBalancerPool `json:"pools"`
}

// LoadBalancerPool is one pool of LoadBalancer addresses.
type LoadBalancerPool struct {
	// Name identifies the pool; a Service asks for it with the annotation
	// keelson.io/load-balancer-pool.
	Name string `json:"name"`
	// Addresses are CIDRs ("192.168.1.240/28", "fd00:1::/120") or
	// inclusive ranges ("192.168.1.240-192.168.1.250").
	Addresses []string `json:"addresses"`
	// NodeSelector limits the pool to Services some eligible node with
	// these labels can serve (YAML only).
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
}

// addrRange is an inclusive address range of one family.
type addrRange struct{ first, last netip.Addr }

func (r addrRange) contains(a netip.Addr) bool {
	return a.BitLen() == r.first.BitLen() && r.first.Compare(a) <= 0 && a.Compare(r.last) <= 0
}

func (r addrRange) overlapsPrefix(p netip.Prefix) bool {
	return p.Contains(r.first) || r.contains(p.Masked().Addr())
}

// parseAddrRange reads a CIDR or FIRST-LAST range.
func parseAddrRange(s string) (addrRange, error) {
	if first, last, ok := strings.Cut(s, "-"); ok {
		f, err1 := netip.ParseAddr(strings.TrimSpace(first))
		l, err2 := netip.ParseAddr(strings.TrimSpace(last))
		if err1 != nil || err2 != nil || f.Zone() != "" || l.Zone() != "" {
			return addrRange{}, fmt.Errorf("%q is not a range FIRST-LAST of two IP addresses", s)
		}
		f, l = f.Unmap(), l.Unmap()
		if f.BitLen() != l.BitLen() || l.Less(f) {
			return addrRange{}, fmt.Errorf("range %q must go from a lower to a higher address of one family", s)
		}
		return addrRange{f, l}, nil
	}
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return addrRange{}, fmt.Errorf("%q is neither a CIDR (192.168.1.240/28) nor a range (192.168.1.240-192.168.1.250)", s)
	}
	if p.Masked() != p {
		return addrRange{}, fmt.Errorf("%q has host bits set; write %s", s, p.Masked())
	}
	last := p.Addr().AsSlice()
	for i := p.Bits(); i < len(last)*8; i++ {
		last[i/8] |= 0x80 >> (i % 8)
	}
	l, _ := netip.AddrFromSlice(last)
	return addrRange{p.Addr().Unmap(), l.Unmap()}, nil
}

// validate checks the pools against the ranges and addresses they must
// stay out of: the service and cluster CIDRs and this server's node
// addresses. Errors name loadBalancer.pools[i] and the flag.
func (lb *LoadBalancer) validate(serviceCIDR, clusterCIDR string, nodeAddrs []string) []error {
	var errs []error
	var reserved []struct {
		what string
		p    netip.Prefix
	}
	for _, set := range []struct{ what, cidrs string }{{"apiServer.serviceCIDR (--service-cidr)", serviceCIDR}, {"clusterCIDR (--cluster-cidr)", clusterCIDR}} {
		for _, c := range strings.Split(set.cidrs, ",") {
			if p, err := netip.ParsePrefix(strings.TrimSpace(c)); err == nil {
				reserved = append(reserved, struct {
					what string
					p    netip.Prefix
				}{set.what + " " + p.String(), p.Masked()})
			}
		}
	}
	var seen []addrRange
	var names []string
	for i, pool := range lb.Pools {
		field := fmt.Sprintf("loadBalancer.pools[%d]", i)
		bad := func(sub, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s%s (--load-balancer-pool): %s", field, sub, fmt.Sprintf(format, args...)))
		}
		if pool.Name == "" {
			bad(".name", "is empty; name every pool")
		} else if slices.Contains(names, pool.Name) {
			bad(".name", "%q names two pools; pool names must be unique", pool.Name)
		}
		names = append(names, pool.Name)
		if len(pool.Addresses) == 0 {
			bad(".addresses", "pool %q lists no addresses; add a CIDR or a FIRST-LAST range", pool.Name)
		}
		for k, v := range pool.NodeSelector {
			if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
				bad(".nodeSelector", "%q is not a label key: %s", k, strings.Join(msgs, "; "))
			} else if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
				bad(".nodeSelector", "%q=%q is not a label value: %s", k, v, strings.Join(msgs, "; "))
			}
		}
		for j, a := range pool.Addresses {
			sub := fmt.Sprintf(".addresses[%d]", j)
			r, err := parseAddrRange(a)
			if err != nil {
				bad(sub, "%v", err)
				continue
			}
			for _, res := range reserved {
				if r.overlapsPrefix(res.p) {
					bad(sub, "%q overlaps %s; load-balancer addresses must lie outside the service and pod ranges", a, res.what)
				}
			}
			for _, n := range nodeAddrs {
				if na, err := netip.ParseAddr(n); err == nil && r.contains(na.Unmap()) {
					bad(sub, "%q contains %s, an address of this server's node; leave node addresses out of the pool", a, na)
				}
			}
			for _, o := range seen {
				if r.first.BitLen() == o.first.BitLen() && r.first.Compare(o.last) <= 0 && o.first.Compare(r.last) <= 0 {
					bad(sub, "%q overlaps an earlier pool's addresses; pools must not share addresses", a)
				}
			}
			seen = append(seen, r)
		}
	}
	return errs
}

// loadBalancerPoolValue is --load-balancer-pool NAME=ADDR[,ADDR...],
// repeatable; flags replace the file's pools.
type loadBalancerPoolValue struct{ list *[]LoadBalancerPool }

func (v *loadBalancerPoolValue) Type() string { return "name=addrs" }

func (v *loadBalancerPoolValue) String() string { return "[" + strings.Join(v.GetSlice(), " ") + "]" }

func (v *loadBalancerPoolValue) Set(s string) error { return v.Append(s) }

func (v *loadBalancerPoolValue) Append(s string) error {
	name, addrs, ok := strings.Cut(s, "=")
	if !ok || name == "" || addrs == "" {
		return fmt.Errorf("%q is not NAME=ADDRESSES (a pool name and comma-separated CIDRs or FIRST-LAST ranges, e.g. lan=192.168.1.240/28)", s)
	}
	var list []string
	for _, a := range strings.Split(addrs, ",") {
		list = append(list, strings.TrimSpace(a))
	}
	*v.list = append(*v.list, LoadBalancerPool{Name: name, Addresses: list})
	return nil
}

func (v *loadBalancerPoolValue) Replace(ss []string) error {
	*v.list = nil
	for _, s := range ss {
		if err := v.Append(s); err != nil {
			return err
		}
	}
	return nil
}

func (v *loadBalancerPoolValue) GetSlice() []string {
	var out []string
	for _, p := range *v.list {
		out = append(out, p.Name+"="+strings.Join(p.Addresses, ","))
	}
	return out
}
