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

// Compile computes the enforcer's chains: a pure function of the cluster
// state. Problems with single policies (an invalid selector or CIDR) are
// returned and the rest is compiled; a broken peer allows nothing, so an
// error never opens traffic.
func Compile(in Input, cfg Config) (*ruleset.Ruleset, []error) {
	c := &compiler{cfg: cfg, rs: ruleset.New(), nsLabels: map[string]labels.Set{},
		markSet: fmt.Sprintf("%#x/%#x", cfg.AllowMark, cfg.AllowMark), parsed: map[*metav1.LabelSelector]labels.Selector{}}
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
	top := c.rs.Chain("filter", chainNetpol)
	top.Add("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN")
	for _, a := range cfg.Exempt {
		if ruleset.IsFamily(a, cfg.Family) {
			top.Add(ruleset.Args([]string{"-d", ruleset.HostCIDR(a)}, ruleset.Comment("served by the node"), []string{"-j", "RETURN"})...)
		}
	}
	for _, p := range c.pods {
		if p.local {
			c.podChains(p, policies)
		}
	}
	return c.rs, c.errs
}

type compiler struct {
	cfg      Config
	rs       *ruleset.Ruleset
	pods     []*pod
	nsLabels map[string]labels.Set
	markSet  string
	errs     []error
	parsed   map[*metav1.LabelSelector]labels.Selector // nil value: invalid
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

// podChains writes a local pod's chains for the directions it is isolated
// in: egress jumps first, so traffic between two pods of this node is
// checked leaving one and entering the other.
func (c *compiler) podChains(p *pod, policies []*networking.NetworkPolicy) {
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
			c.podChain(p, ip, dir, applicable)
		}
	}
}

func (c *compiler) podChain(p *pod, ip netip.Addr, dir direction, policies []*networking.NetworkPolicy) {
	name := ruleset.ChainName(dir.prefix, ip.String())
	c.rs.Chain("filter", chainNetpol).Add(ruleset.Args([]string{dir.podMatch, ruleset.HostCIDR(ip)},
		ruleset.Comment(p.namespace+"/"+p.name+" "+dir.name), []string{"-j", name})...)
	ch := c.rs.Chain("filter", name)
	ch.Add("-j", "MARK", "--set-xmark", fmt.Sprintf("0x0/%#x", c.cfg.AllowMark))
	allowed := []string{"-m", "mark", "--mark", c.markSet, "-j", "RETURN"}
	for _, pol := range policies {
		n := len(pol.Spec.Ingress)
		if dir == egress {
			n = len(pol.Spec.Egress)
		}
		for i := range n {
			rule := ruleset.ChainName(prefixRule, fmt.Sprintf("%s/%s/%s/%s/%d", ip, pol.Namespace, pol.Name, dir.name, i))
			c.ruleChain(rule, pol, dir, i, p)
			ch.Add(ruleset.Args(ruleset.Comment(fmt.Sprintf("policy %s/%s %s rule %d", pol.Namespace, pol.Name, dir.name, i)), []string{"-j", rule})...)
			ch.Add(allowed...)
		}
	}
	ch.Add(ruleset.Args(ruleset.Comment(p.namespace+"/"+p.name+" "+dir.name+" not allowed by any policy"), []string{"-j", "REJECT"})...)
}

// ruleChain writes one policy rule as it applies to pod p: it sets the
// allow bit for every packet from/to one of the rule's peers on one of its
// ports.
func (c *compiler) ruleChain(name string, pol *networking.NetworkPolicy, dir direction, i int, p *pod) {
	ch := c.rs.Chain("filter", name)
	var peers []networking.NetworkPolicyPeer
	var ports []networking.NetworkPolicyPort
	if dir == ingress {
		peers, ports = pol.Spec.Ingress[i].From, pol.Spec.Ingress[i].Ports
	} else {
		peers, ports = pol.Spec.Egress[i].To, pol.Spec.Egress[i].Ports
	}
	set := []string{"-j", "MARK", "--set-xmark", c.markSet}
	if len(peers) == 0 {
		// Any peer: with named ports on egress, the port is resolved on
		// every possible destination pod.
		if dir == egress && hasNamedPort(ports) {
			for _, q := range c.pods {
				for _, ip := range q.ips {
					for _, pm := range c.portMatches(ports, q) {
						ch.Add(ruleset.Args([]string{"-d", ruleset.HostCIDR(ip)}, pm, set)...)
					}
				}
			}
			c.unnamedPorts(ch, ports, set)
			return
		}
		for _, pm := range c.portMatches(ports, p) {
			ch.Add(ruleset.Args(pm, set)...)
		}
		return
	}
	for pi, peer := range peers {
		if peer.IPBlock != nil {
			c.ipBlock(ch, name, pi, peer.IPBlock, dir, ports, p, set, pol)
			continue
		}
		for _, q := range c.peerPods(pol, peer) {
			target := p // ingress: named ports are the selected pod's
			if dir == egress {
				target = q // egress: the destination's
			}
			for _, ip := range q.ips {
				for _, pm := range c.portMatches(ports, target) {
					ch.Add(ruleset.Args([]string{dir.peerMatch, ruleset.HostCIDR(ip)}, pm, set)...)
				}
			}
		}
	}
}

// unnamedPorts adds the numeric ports of an egress rule to any destination
// (named ones were resolved per pod by the caller).
func (c *compiler) unnamedPorts(ch *ruleset.Chain, ports []networking.NetworkPolicyPort, set []string) {
	var numeric []networking.NetworkPolicyPort
	for _, pt := range ports {
		if pt.Port == nil || pt.Port.Type != intstr.String {
			numeric = append(numeric, pt)
		}
	}
	if len(numeric) == 0 {
		return
	}
	for _, pm := range c.portMatches(numeric, nil) {
		ch.Add(ruleset.Args(pm, set)...)
	}
}

// ipBlock allows a CIDR minus its exceptions through a chain of its own:
// the exceptions return before the CIDR sets the bit.
func (c *compiler) ipBlock(ch *ruleset.Chain, rule string, i int, b *networking.IPBlock, dir direction, ports []networking.NetworkPolicyPort, p *pod, set []string, pol *networking.NetworkPolicy) {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		c.errs = append(c.errs, fmt.Errorf("networkpolicy %s/%s: ipBlock.cidr %q: %w", pol.Namespace, pol.Name, b.CIDR, err))
		return
	}
	if !ruleset.IsFamily(cidr.Addr(), c.cfg.Family) {
		return
	}
	block := ruleset.ChainName(prefixBlock, fmt.Sprintf("%s/%d", rule, i))
	bc := c.rs.Chain("filter", block)
	for _, e := range b.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("networkpolicy %s/%s: ipBlock.except %q: %w", pol.Namespace, pol.Name, e, err))
			continue
		}
		if ruleset.IsFamily(ex.Addr(), c.cfg.Family) {
			bc.Add(dir.peerMatch, ex.Masked().String(), "-j", "RETURN")
		}
	}
	bc.Add(ruleset.Args([]string{dir.peerMatch, cidr.Masked().String()}, set)...)
	target := p
	if dir == egress {
		target = nil // named ports cannot be resolved on addresses
	}
	for _, pm := range c.portMatches(ports, target) {
		ch.Add(ruleset.Args(pm, []string{"-j", block})...)
	}
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

// portMatches turns a rule's ports into match arguments; one entry per
// port, or a single empty match for "all ports". Named ports are resolved
// on target's containers (nil: unresolvable, matches nothing).
func (c *compiler) portMatches(ports []networking.NetworkPolicyPort, target *pod) [][]string {
	if len(ports) == 0 {
		return [][]string{nil}
	}
	var out [][]string
	for _, pt := range ports {
		proto := v1.ProtocolTCP
		if pt.Protocol != nil {
			proto = *pt.Protocol
		}
		p := strings.ToLower(string(proto))
		base := []string{"-p", p, "-m", p}
		switch {
		case pt.Port == nil:
			out = append(out, []string{"-p", p})
		case pt.Port.Type == intstr.String: // a named port
			if target == nil {
				continue
			}
			for _, cp := range target.ports {
				cpProto := cmp.Or(cp.Protocol, v1.ProtocolTCP)
				if cp.Name == pt.Port.StrVal && cpProto == proto {
					out = append(out, ruleset.Args(base, []string{"--dport", strconv.Itoa(int(cp.ContainerPort))}))
				}
			}
		case pt.EndPort != nil && *pt.EndPort > pt.Port.IntVal:
			out = append(out, ruleset.Args(base, []string{"--dport", fmt.Sprintf("%d:%d", pt.Port.IntVal, *pt.EndPort)}))
		default:
			out = append(out, ruleset.Args(base, []string{"--dport", strconv.Itoa(int(pt.Port.IntVal))}))
		}
	}
	return out
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
