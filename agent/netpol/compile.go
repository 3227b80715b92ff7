package netpol

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	networking "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/keelson/keelson/agent/internal/ruleset"
)

// Chains of the enforcer, all in the filter table. Every connection's
// first packet that leaves or enters a pod of this node passes
// KEELSON-NETPOL: a pod isolated for egress sends it through its egress
// chain, a pod isolated for ingress through its ingress chain. Such a
// chain clears the allow bit, runs the pod's rule chains (each sets the bit
// when a rule allows the packet) and rejects the packet unless the bit is
// set. Replies belong to allowed connections and pass untouched.
const (
	chainNetpol = "KEELSON-NETPOL"
	prefixIn    = "KEELSON-NPI-" // per pod IP: ingress
	prefixOut   = "KEELSON-NPE-" // per pod IP: egress
	prefixRule  = "KEELSON-NPR-" // per pod IP and policy rule
	prefixBlock = "KEELSON-NPB-" // per ipBlock with exceptions
)

// Owned reports whether a chain is the enforcer's.
func Owned(chain string) bool {
	if chain == chainNetpol {
		return true
	}
	for _, p := range []string{prefixIn, prefixOut, prefixRule, prefixBlock} {
		if strings.HasPrefix(chain, p) {
			return true
		}
	}
	return false
}

// Input is the cluster state the rules derive from.
type Input struct {
	Policies   []*networking.NetworkPolicy
	Pods       []*v1.Pod
	Namespaces []*v1.Namespace
	// NodeName: only this node's pods get chains (each node enforces for
	// its own pods, ingress and egress).
	NodeName string
}

// Config shapes the rules besides the cluster state.
type Config struct {
	Family v1.IPFamily
	// AllowMark is the packet mark bit a rule sets to allow a packet.
	AllowMark uint32
	// Exempt are destinations the node serves itself (cluster DNS): pods
	// reach them whatever their egress policies, as no policy can select
	// the node's own service.
	Exempt []netip.Addr
}

// pod is what the rules need of a pod.
type pod struct {
	namespace, name string
	labels          labels.Set
	ips             []netip.Addr // of the family
	ports           []v1.ContainerPort
	local           bool
}

// Compile computes the enforcer's iptables chains: a pure function of the
// cluster state. Problems with single policies (an invalid selector or
// CIDR) are returned and the rest is compiled; a broken peer allows
// nothing, so an error never opens traffic.
func Compile(in Input, cfg Config) (*ruleset.Ruleset, []error) {
	pl, errs := plan(in, cfg)
	return emitIPTables(pl, cfg), errs
}

// policyPlan is what the compiler decides, for either backend: which pod
// addresses are isolated in which direction and which packets each rule
// of their policies allows. The backends only spell it out.
type policyPlan struct {
	exempt []netip.Addr // of the family
	// neighborDiscovery: ICMPv6 router and neighbor solicitations and
	// advertisements (types 133-136) pass whatever the policies say, as
	// IPv6 does not work without them (ARP, its IPv4 counterpart, is not
	// IP and never reaches these hooks).
	neighborDiscovery bool
	pods              []podPlan // per local pod address and direction: egress first
}

// podPlan is one local pod address isolated in one direction: a packet is
// allowed when one allow of one of its rules matches.
type podPlan struct {
	pod   *pod
	ip    netip.Addr
	dir   direction
	rules []rulePlan
}

// rulePlan is one rule of one policy as it applies to one pod.
type rulePlan struct {
	policy *networking.NetworkPolicy
	index  int
	allows []allow
}

// allow lets packets from (ingress) or to (egress) a peer on a port
// through: the peer is a set of pod addresses, an ipBlock, or anyone when
// both are nil.
type allow struct {
	pods  *podSet
	block *ipBlock
	port  portMatch
}

// podSet is the addresses of the pods a peer selects (on egress with
// named ports: those whose port of that name is the allow's). key names it
// for the policy rule, peer and port it comes from, so that every local
// pod of the rule shares it.
type podSet struct {
	key   string
	addrs []netip.Addr
}

// ipBlock is a CIDR minus its exceptions, all of the family.
type ipBlock struct {
	key    string
	cidr   netip.Prefix
	except []netip.Prefix
}

// portMatch is a protocol and a destination port range; proto "" is any
// packet, lo 0 any port of proto.
type portMatch struct {
	proto  string
	lo, hi int32
}

// plan decides, for the family, the isolated pod addresses and what their
// policies allow.
func plan(in Input, cfg Config) (*policyPlan, []error) {
	c := &compiler{cfg: cfg, nsLabels: map[string]labels.Set{}, parsed: map[*metav1.LabelSelector]labels.Selector{},
		sets: map[string]*podSet{}, blocks: map[string]*ipBlock{}}
	for _, ns := range in.Namespaces {
		c.nsLabels[ns.Name] = ns.Labels
	}
	for _, p := range in.Pods {
		if pp, ok := podOf(p, in.NodeName, cfg.Family); ok {
			c.pods = append(c.pods, pp)
		}
	}
	slices.SortFunc(c.pods, func(a, b *pod) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
	})
	policies := slices.Clone(in.Policies)
	slices.SortFunc(policies, func(a, b *networking.NetworkPolicy) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	pl := &policyPlan{neighborDiscovery: cfg.Family == v1.IPv6Protocol}
	for _, a := range cfg.Exempt {
		if ruleset.IsFamily(a, cfg.Family) {
			pl.exempt = append(pl.exempt, a.Unmap())
		}
	}
	for _, p := range c.pods {
		if p.local {
			pl.pods = append(pl.pods, c.podPlans(p, policies)...)
		}
	}
	return pl, c.errs
}

type compiler struct {
	cfg      Config
	pods     []*pod
	nsLabels map[string]labels.Set
	errs     []error
	parsed   map[*metav1.LabelSelector]labels.Selector // nil value: invalid
	sets     map[string]*podSet                        // by key
	blocks   map[string]*ipBlock                       // by key; nil value: invalid
}

func podOf(p *v1.Pod, node string, family v1.IPFamily) (*pod, bool) {
	if p.Spec.HostNetwork || p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
		return nil, false // not a pod-network address, or one that may be reused
	}
	out := &pod{namespace: p.Namespace, name: p.Name, labels: p.Labels, local: p.Spec.NodeName == node && node != ""}
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []v1.PodIP{{IP: p.Status.PodIP}}
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip.IP); err == nil && ruleset.IsFamily(a, family) {
			out.ips = append(out.ips, a.Unmap())
		}
	}
	for _, c := range p.Spec.Containers {
		out.ports = append(out.ports, c.Ports...)
	}
	return out, len(out.ips) > 0
}

// direction is ingress or egress.
type direction struct {
	name       string
	policyType networking.PolicyType
	prefix     string
	podMatch   string // -d for ingress (traffic to the pod), -s for egress
	peerMatch  string // -s for ingress (from the peer), -d for egress
}

var (
	ingress = direction{"ingress", networking.PolicyTypeIngress, prefixIn, "-d", "-s"}
	egress  = direction{"egress", networking.PolicyTypeEgress, prefixOut, "-s", "-d"}
)

// podPlans are a local pod's plans for the directions it is isolated in:
// egress first, so traffic between two pods of this node is checked
// leaving one and entering the other.
func (c *compiler) podPlans(p *pod, policies []*networking.NetworkPolicy) []podPlan {
	var out []podPlan
	for _, dir := range []direction{egress, ingress} {
		var applicable []*networking.NetworkPolicy
		for _, pol := range policies {
			if pol.Namespace == p.namespace && hasType(pol, dir.policyType) && c.selects(pol, &pol.Spec.PodSelector, p) {
				applicable = append(applicable, pol)
			}
		}
		if len(applicable) == 0 {
			continue // not isolated in this direction
		}
		for _, ip := range p.ips {
			pp := podPlan{pod: p, ip: ip, dir: dir}
			for _, pol := range applicable {
				n := len(pol.Spec.Ingress)
				if dir == egress {
					n = len(pol.Spec.Egress)
				}
				for i := range n {
					pp.rules = append(pp.rules, rulePlan{policy: pol, index: i, allows: c.allows(pol, dir, i, p)})
				}
			}
			out = append(out, pp)
		}
	}
	return out
}

// allows are what one policy rule lets through as it applies to pod p.
func (c *compiler) allows(pol *networking.NetworkPolicy, dir direction, i int, p *pod) []allow {
	var peers []networking.NetworkPolicyPeer
	var ports []networking.NetworkPolicyPort
	if dir == ingress {
		peers, ports = pol.Spec.Ingress[i].From, pol.Spec.Ingress[i].Ports
	} else {
		peers, ports = pol.Spec.Egress[i].To, pol.Spec.Egress[i].Ports
	}
	key := fmt.Sprintf("%s/%s/%s/%d", pol.Namespace, pol.Name, dir.name, i)
	var out []allow
	if len(peers) == 0 {
		// Any peer: with named ports on egress, the port is resolved on
		// every possible destination pod.
		if dir == egress && hasNamedPort(ports) {
			out = append(out, c.namedPortAllows(key+"/any", c.pods, ports)...)
			if numeric := numericPorts(ports); len(numeric) > 0 { // none: not "all ports"
				for _, pm := range c.portMatches(numeric, nil) {
					out = append(out, allow{port: pm})
				}
			}
			return out
		}
		for _, pm := range c.portMatches(ports, p) {
			out = append(out, allow{port: pm})
		}
		return out
	}
	for pi, peer := range peers {
		pkey := fmt.Sprintf("%s/%d", key, pi)
		if peer.IPBlock != nil {
			b := c.ipBlock(pkey, peer.IPBlock, pol)
			if b == nil {
				continue
			}
			target := p
			if dir == egress {
				target = nil // named ports cannot be resolved on addresses
			}
			for _, pm := range c.portMatches(ports, target) {
				out = append(out, allow{block: b, port: pm})
			}
			continue
		}
		selected := c.peerPods(pol, peer)
		if dir == egress && hasNamedPort(ports) {
			out = append(out, c.namedPortAllows(pkey, selected, ports)...) // the destination's port
			continue
		}
		set := c.podSet(pkey, selected, nil)
		for _, pm := range c.portMatches(ports, p) { // ingress: named ports are the selected pod's
			out = append(out, allow{pods: set, port: pm})
		}
	}
	return out
}

// namedPortAllows resolves an egress rule's ports on each destination
// pod: the pods are grouped by the port they resolve to.
func (c *compiler) namedPortAllows(key string, pods []*pod, ports []networking.NetworkPolicyPort) []allow {
	by := map[portMatch][]*pod{}
	var order []portMatch
	for _, q := range pods {
		for _, pm := range c.portMatches(ports, q) {
			if _, ok := by[pm]; !ok {
				order = append(order, pm)
			}
			by[pm] = append(by[pm], q)
		}
	}
	var out []allow
	for _, pm := range order {
		out = append(out, allow{pods: c.podSet(key, by[pm], &pm), port: pm})
	}
	return out
}

// podSet is the set of pods' addresses for a peer (and port).
func (c *compiler) podSet(key string, pods []*pod, pm *portMatch) *podSet {
	if pm != nil {
		key += "/" + pm.String()
	}
	if s, ok := c.sets[key]; ok {
		return s
	}
	s := &podSet{key: key}
	for _, q := range pods {
		s.addrs = append(s.addrs, q.ips...)
	}
	c.sets[key] = s
	return s
}

func numericPorts(ports []networking.NetworkPolicyPort) []networking.NetworkPolicyPort {
	var numeric []networking.NetworkPolicyPort
	for _, pt := range ports {
		if pt.Port == nil || pt.Port.Type != intstr.String {
			numeric = append(numeric, pt)
		}
	}
	return numeric
}

// ipBlock parses a peer's ipBlock; nil when it is of the other family or
// invalid (an invalid exception makes the whole block allow nothing).
func (c *compiler) ipBlock(key string, b *networking.IPBlock, pol *networking.NetworkPolicy) *ipBlock {
	if ib, ok := c.blocks[key]; ok {
		return ib
	}
	c.blocks[key] = nil
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		c.errs = append(c.errs, fmt.Errorf("networkpolicy %s/%s: ipBlock.cidr %q: %w", pol.Namespace, pol.Name, b.CIDR, err))
		return nil
	}
	if !ruleset.IsFamily(cidr.Addr(), c.cfg.Family) {
		return nil
	}
	ib := &ipBlock{key: key, cidr: cidr.Masked()}
	for _, e := range b.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("networkpolicy %s/%s: ipBlock.except %q: %w", pol.Namespace, pol.Name, e, err))
			return nil
		}
		if ruleset.IsFamily(ex.Addr(), c.cfg.Family) {
			ib.except = append(ib.except, ex.Masked())
		}
	}
	c.blocks[key] = ib
	return ib
}

// peerPods are the pods a peer selects (podSelector and/or
// namespaceSelector).
func (c *compiler) peerPods(pol *networking.NetworkPolicy, peer networking.NetworkPolicyPeer) []*pod {
	var out []*pod
	for _, q := range c.pods {
		if peer.NamespaceSelector == nil {
			if q.namespace != pol.Namespace {
				continue
			}
		} else if !c.matches(pol, peer.NamespaceSelector, c.nsLabels[q.namespace]) {
			continue
		}
		if peer.PodSelector != nil && !c.matches(pol, peer.PodSelector, q.labels) {
			continue
		}
		out = append(out, q)
	}
	return out
}

func (c *compiler) selects(pol *networking.NetworkPolicy, sel *metav1.LabelSelector, p *pod) bool {
	return c.matches(pol, sel, p.labels)
}

func (c *compiler) matches(pol *networking.NetworkPolicy, sel *metav1.LabelSelector, set labels.Set) bool {
	s, ok := c.parsed[sel]
	if !ok {
		var err error
		s, err = metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("networkpolicy %s/%s: selector: %w", pol.Namespace, pol.Name, err))
			s = nil
		}
		c.parsed[sel] = s
	}
	return s != nil && s.Matches(set)
}

// portMatches turns a rule's ports into port matches; one per port, or a
// single "any packet" match when there are none. Named ports are resolved
// on target's containers (nil: unresolvable, matches nothing).
func (c *compiler) portMatches(ports []networking.NetworkPolicyPort, target *pod) []portMatch {
	if len(ports) == 0 {
		return []portMatch{{}}
	}
	var out []portMatch
	for _, pt := range ports {
		proto := v1.ProtocolTCP
		if pt.Protocol != nil {
			proto = *pt.Protocol
		}
		p := strings.ToLower(string(proto))
		switch {
		case pt.Port == nil:
			out = append(out, portMatch{proto: p})
		case pt.Port.Type == intstr.String: // a named port
			if target == nil {
				continue
			}
			for _, cp := range target.ports {
				cpProto := cmp.Or(cp.Protocol, v1.ProtocolTCP)
				if cp.Name == pt.Port.StrVal && cpProto == proto {
					out = append(out, portMatch{proto: p, lo: cp.ContainerPort, hi: cp.ContainerPort})
				}
			}
		case pt.EndPort != nil && *pt.EndPort > pt.Port.IntVal:
			out = append(out, portMatch{proto: p, lo: pt.Port.IntVal, hi: *pt.EndPort})
		default:
			out = append(out, portMatch{proto: p, lo: pt.Port.IntVal, hi: pt.Port.IntVal})
		}
	}
	return out
}

func (pm portMatch) String() string {
	switch {
	case pm.proto == "":
		return "any"
	case pm.lo == 0:
		return pm.proto
	case pm.lo == pm.hi:
		return pm.proto + ":" + strconv.Itoa(int(pm.lo))
	}
	return fmt.Sprintf("%s:%d-%d", pm.proto, pm.lo, pm.hi)
}

func hasNamedPort(ports []networking.NetworkPolicyPort) bool {
	for _, p := range ports {
		if p.Port != nil && p.Port.Type == intstr.String {
			return true
		}
	}
	return false
}

// hasType applies the API's defaulting for policies stored without
// policyTypes: Ingress always, Egress when there are egress rules.
func hasType(pol *networking.NetworkPolicy, t networking.PolicyType) bool {
	types := pol.Spec.PolicyTypes
	if len(types) == 0 {
		types = []networking.PolicyType{networking.PolicyTypeIngress}
		if len(pol.Spec.Egress) > 0 {
			types = append(types, networking.PolicyTypeEgress)
		}
	}
	return slices.Contains(types, t)
}
