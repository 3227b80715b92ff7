package localcloud

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
)

// The annotations a Service uses to ask for its load-balancer addresses,
// Keelson's spelling of MetalLB's metallb.universe.tf/loadBalancerIPs and
// metallb.universe.tf/address-pool.
const (
	// AnnotationIPs asks for these addresses, comma-separated (one per IP
	// family of the Service); it replaces the deprecated
	// spec.loadBalancerIP, which is honoured too.
	AnnotationIPs = "keelson.io/load-balancer-ips"
	// AnnotationPool asks for an address from the named pool.
	AnnotationPool = "keelson.io/load-balancer-pool"
)

// holder is another Service and the addresses it holds (in its status, or
// reserved by this process for a status not yet written).
type holder struct {
	key     string
	created time.Time
	addrs   []netip.Addr
	ports   []v1.ServicePort
}

// before orders Services by age, then key: the older one keeps a contested
// address, so two controllers (or a controller before and after a
// failover) settle a conflict the same way.
func (h holder) before(key string, created time.Time) bool {
	if !h.created.Equal(created) {
		return h.created.Before(created)
	}
	return h.key < key
}

// world is what an assignment depends on, all of it read from the API
// (Service statuses, Nodes) and the configuration: nothing that a restart
// or a leader failover loses.
type world struct {
	pools []pool
	// nodes are the nodes that may serve load balancers (ready, not
	// excluded), the ones the service controller passes.
	nodes []*v1.Node
	// others holds every other Service's addresses.
	others []holder
	// nodeAddrs are every Node's addresses: never handed out of a pool.
	nodeAddrs map[netip.Addr]bool
}

// assign returns the addresses svc gets, in the order of its IP families.
func (w world) assign(svc *v1.Service) ([]netip.Addr, error) {
	fams := families(svc)
	req, err := requested(svc, fams)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	if len(w.pools) == 0 {
		out, err = w.nodeAddresses(svc, fams, req)
	} else {
		out, err = w.fromPools(svc, fams, req)
	}
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s address is available", familyNames(fams))
	}
	if svc.Spec.IPFamilyPolicy != nil && *svc.Spec.IPFamilyPolicy == v1.IPFamilyPolicyRequireDualStack && len(out) < len(fams) {
		return nil, fmt.Errorf("ipFamilyPolicy RequireDualStack: only %v is available, no address of the other family", out)
	}
	return out, nil
}

// families are the Service's IP families, primary first.
func families(svc *v1.Service) []v1.IPFamily {
	if len(svc.Spec.IPFamilies) > 0 {
		return svc.Spec.IPFamilies
	}
	if a, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil && a.Is6() && !a.Is4In6() {
		return []v1.IPFamily{v1.IPv6Protocol}
	}
	return []v1.IPFamily{v1.IPv4Protocol}
}

func familyBits(f v1.IPFamily) int {
	if f == v1.IPv6Protocol {
		return 128
	}
	return 32
}

func familyNames(fams []v1.IPFamily) string {
	var s []string
	for _, f := range fams {
		s = append(s, string(f))
	}
	return strings.Join(s, " or ")
}

// requested reads the addresses the Service asks for: the annotation and
// spec.loadBalancerIP. Each must be of one of its families, at most one
// per family.
func requested(svc *v1.Service, fams []v1.IPFamily) ([]netip.Addr, error) {
	var out []netip.Addr
	if v := strings.TrimSpace(svc.Annotations[AnnotationIPs]); v != "" {
		for _, s := range strings.Split(v, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("annotation %s: %q is not an IP address", AnnotationIPs, s)
			}
			out = append(out, a.Unmap())
		}
	}
	if s := svc.Spec.LoadBalancerIP; s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("spec.loadBalancerIP: %q is not an IP address", s)
		}
		if len(out) > 0 && !slices.Contains(out, a.Unmap()) {
			return nil, fmt.Errorf("spec.loadBalancerIP %s is not among annotation %s %q; set one of them", s, AnnotationIPs, svc.Annotations[AnnotationIPs])
		}
		if len(out) == 0 {
			out = append(out, a.Unmap())
		}
	}
	seen := map[int]bool{}
	for _, a := range out {
		if !slices.ContainsFunc(fams, func(f v1.IPFamily) bool { return familyBits(f) == a.BitLen() }) {
			return nil, fmt.Errorf("requested address %s is not of the Service's IP families (%s)", a, familyNames(fams))
		}
		if seen[a.BitLen()] {
			return nil, fmt.Errorf("annotation %s: more than one address of one family", AnnotationIPs)
		}
		seen[a.BitLen()] = true
	}
	return out, nil
}

// holderOf returns the Service holding a that svc must yield to: any
// holder when allocating afresh (older is false), the older one when svc
// already holds a (older is true).
func (w world) holderOf(a netip.Addr, svc *v1.Service, older bool) (string, bool) {
	key := svc.Namespace + "/" + svc.Name
	for _, h := range w.others {
		if slices.Contains(h.addrs, a) && (!older || h.before(key, svc.CreationTimestamp.Time)) {
			return h.key, true
		}
	}
	return "", false
}

// candidatePools are the pools svc may take from: the one its annotation
// names, or every pool, limited to those some eligible node can serve.
func (w world) candidatePools(svc *v1.Service) ([]pool, error) {
	want := svc.Annotations[AnnotationPool]
	var out []pool
	found := want == ""
	for _, p := range w.pools {
		if want != "" && p.name != want {
			continue
		}
		found = true
		if p.servedBy(w.nodes) {
			out = append(out, p)
		}
	}
	if !found {
		return nil, fmt.Errorf("annotation %s: no pool is named %q", AnnotationPool, want)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no eligible node matches the node selector of any pool it may use")
	}
	return out, nil
}

// fromPools allocates one address per family from the candidate pools:
// the requested ones, else the ones the Service's status already holds,
// else the lowest free ones.
func (w world) fromPools(svc *v1.Service, fams []v1.IPFamily, req []netip.Addr) ([]netip.Addr, error) {
	pools, err := w.candidatePools(svc)
	if err != nil {
		return nil, err
	}
	inPools := func(a netip.Addr) bool {
		return slices.ContainsFunc(pools, func(p pool) bool { return p.contains(a) })
	}
	if len(req) > 0 {
		for _, a := range req {
			if !inPools(a) {
				return nil, fmt.Errorf("requested address %s is in no pool this Service may use", a)
			}
			if w.nodeAddrs[a] {
				return nil, fmt.Errorf("requested address %s is a node's address", a)
			}
			if h, taken := w.holderOf(a, svc, holds(svc, a)); taken {
				return nil, fmt.Errorf("requested address %s is held by Service %s", a, h)
			}
		}
		return req, nil
	}
	current := statusAddrs(svc)
	var out []netip.Addr
	for _, f := range fams {
		bits := familyBits(f)
		if i := slices.IndexFunc(current, func(a netip.Addr) bool {
			_, taken := w.holderOf(a, svc, true)
			return a.BitLen() == bits && inPools(a) && !taken && !w.nodeAddrs[a]
		}); i >= 0 {
			out = append(out, current[i])
			continue
		}
		taken := func(a netip.Addr) bool {
			_, held := w.holderOf(a, svc, false)
			return held || w.nodeAddrs[a]
		}
		for _, p := range pools {
			if a, ok := p.firstFree(bits, taken); ok {
				out = append(out, a)
				break
			}
		}
	}
	return out, nil
}

func holds(svc *v1.Service, a netip.Addr) bool { return slices.Contains(statusAddrs(svc), a) }

// statusAddrs are the IPs of a Service's load-balancer status.
func statusAddrs(svc *v1.Service) []netip.Addr {
	var out []netip.Addr
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}
