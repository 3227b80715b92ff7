package proxy

import (
	"fmt"
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/agent/internal/ruleset"
)

// Chains of the proxy. kube-proxy's iptables mode is the model: a services
// chain jumped to from PREROUTING and OUTPUT matches each service address
// and jumps to a per-port chain, which picks an endpoint chain at random,
// which DNATs. Traffic that must leave the node with the node's address is
// marked and masqueraded in POSTROUTING.
const (
	chainServices         = "KEELSON-SERVICES"          // nat: service addresses; filter: rejects
	chainExternalServices = "KEELSON-EXTERNAL-SERVICES" // filter: rejects for node ports and external addresses
	chainNodePorts        = "KEELSON-NODEPORTS"         // nat: node ports, last in KEELSON-SERVICES
	chainPostrouting      = "KEELSON-POSTROUTING"       // nat: masquerade marked traffic
	chainMarkMasq         = "KEELSON-MARK-MASQ"         // nat: mark for masquerade
	chainForward          = "KEELSON-FORWARD"           // filter: accept service traffic

	prefixSVC = "KEELSON-SVC-" // nat: one per service port, cluster policy
	prefixSVL = "KEELSON-SVL-" // nat: one per service port, local policy
	prefixEXT = "KEELSON-EXT-" // nat: one per service port reachable from outside
	prefixSEP = "KEELSON-SEP-" // nat: one per service port endpoint
)

// Owned reports whether a chain is one the proxy manages; every other chain
// (the NetworkPolicy enforcer's included) is left alone.
func Owned(chain string) bool {
	switch chain {
	case chainServices, chainExternalServices, chainNodePorts, chainPostrouting, chainMarkMasq, chainForward:
		return true
	}
	for _, p := range []string{prefixSVC, prefixSVL, prefixEXT, prefixSEP} {
		if strings.HasPrefix(chain, p) {
			return true
		}
	}
	return false
}

// RulesConfig is what besides the services shapes the rules.
type RulesConfig struct {
	// Family is the IP family of the tables written.
	Family v1.IPFamily
	// ClusterCIDR holds the pods' addresses of this family. Traffic to a
	// cluster IP from outside it is masqueraded, and pods reaching an
	// externalTrafficPolicy: Local service from inside are served by any
	// endpoint. Invalid (zero) disables both, as kube-proxy without
	// --cluster-cidr.
	ClusterCIDR netip.Prefix
	// MasqueradeAll masquerades all traffic to cluster IPs.
	MasqueradeAll bool
	// MasqueradeMark is the packet mark bit that asks for masquerade.
	MasqueradeMark uint32
	// NodePortAddresses limits node ports to these ranges of local
	// addresses; empty means every local address but loopback.
	NodePortAddresses []netip.Prefix
	// Exempt are addresses the node serves itself (the cluster DNS
	// address): never redirected nor rejected, even when a Service claims
	// them.
	Exempt []netip.Addr
	// RandomFully adds --random-fully to MASQUERADE (avoids source port
	// collisions under load) when iptables supports it.
	RandomFully bool
	// NoComments leaves out the per-service comments: on large clusters
	// they cost more restore time than they are worth (kube-proxy drops
	// them above 1,000 endpoints too; see LargeClusterEndpoints).
	NoComments bool
}

// LargeClusterEndpoints is the number of endpoints above which the proxier
// writes rules without comments.
const LargeClusterEndpoints = 1000

// Rules computes the proxy's chains for ports: a pure function, so that
// rules are tested as data and a sync is a diff of two results.
func Rules(ports []ServicePort, cfg RulesConfig) *ruleset.Ruleset {
	rs := ruleset.New()
	g := rulegen{cfg: cfg, rs: rs, mark: fmt.Sprintf("%#x/%#x", cfg.MasqueradeMark, cfg.MasqueradeMark)}
	g.fixed()
	for i := range ports {
		g.port(&ports[i])
	}
	g.nodePortsJump()
	return rs
}

type rulegen struct {
	cfg  RulesConfig
	rs   *ruleset.Ruleset
	mark string
}

// comment is ruleset.Comment unless comments are off.
func (g *rulegen) comment(text string) []string {
	if g.cfg.NoComments {
		return nil
	}
	return ruleset.Comment(text)
}

func (g *rulegen) nat(chain string) *ruleset.Chain    { return g.rs.Chain("nat", chain) }
func (g *rulegen) filter(chain string) *ruleset.Chain { return g.rs.Chain("filter", chain) }

// fixed writes the chains every node has, services or not.
func (g *rulegen) fixed() {
	svcs, filterSvcs, extSvcs := g.nat(chainServices), g.filter(chainServices), g.filter(chainExternalServices)
	for _, a := range g.cfg.Exempt {
		if ruleset.IsFamily(a, g.cfg.Family) {
			dst := []string{"-d", ruleset.HostCIDR(a)}
			svcs.Add(append(append(dst, g.comment("served by the node")...), "-j", "RETURN")...)
			filterSvcs.Add(append(append(dst, g.comment("served by the node")...), "-j", "RETURN")...)
			extSvcs.Add(append(append(dst, g.comment("served by the node")...), "-j", "RETURN")...)
		}
	}
	g.nat(chainNodePorts)
	post := g.nat(chainPostrouting)
	post.Add("-m", "mark", "!", "--mark", g.mark, "-j", "RETURN")
	// Clear the bit so that a packet re-entering the stack (e.g. over a
	// tunnel or a bridge) is not masqueraded twice.
	post.Add("-j", "MARK", "--xor-mark", fmt.Sprintf("%#x", g.cfg.MasqueradeMark))
	masq := append(g.comment("keelson service traffic requiring SNAT"), "-j", "MASQUERADE")
	if g.cfg.RandomFully {
		masq = append(masq, "--random-fully")
	}
	post.Add(masq...)
	g.nat(chainMarkMasq).Add("-j", "MARK", "--or-mark", fmt.Sprintf("%#x", g.cfg.MasqueradeMark))

	fwd := g.filter(chainForward)
	// Packets conntrack cannot place would bypass DNAT's reverse
	// translation and reach clients with a pod's address: drop them.
	fwd.Add("-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
	fwd.Add(append(g.comment("keelson forwarding rules"), "-m", "mark", "--mark", g.mark, "-j", "ACCEPT")...)
	fwd.Add(append(g.comment("keelson forwarding conntrack rule"), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")...)
}

// nodePortsJump ends KEELSON-SERVICES: what matched no service address and
// is addressed to the node goes to the node ports.
func (g *rulegen) nodePortsJump() {
	svcs := g.nat(chainServices)
	comment := g.comment("keelson service nodeports; must be the last rule in this chain")
	if len(g.cfg.NodePortAddresses) == 0 {
		loopback := "127.0.0.0/8"
		if g.cfg.Family == v1.IPv6Protocol {
			loopback = "::1/128"
		}
		// Loopback is left out: reaching it would need route_localnet,
		// which exposes every localhost-bound service to the network.
		svcs.Add(append(comment, "-m", "addrtype", "--dst-type", "LOCAL", "!", "-d", loopback, "-j", chainNodePorts)...)
		return
	}
	for _, p := range g.cfg.NodePortAddresses {
		if ruleset.IsFamily(p.Addr(), g.cfg.Family) {
			svcs.Add(append(comment, "-d", p.Masked().String(), "-j", chainNodePorts)...)
		}
	}
}

// port writes the rules of one service port.
func (g *rulegen) port(sp *ServicePort) {
	clusterEps, localEps := sp.ClusterEndpoints(), sp.LocalEndpoints()
	internalEps, externalEps := clusterEps, clusterEps
	if sp.InternalLocal {
		internalEps = localEps
	}
	if sp.ExternalLocal {
		externalEps = localEps
	}
	id := sp.id()
	svc, svl, ext := ruleset.ChainName(prefixSVC, id), ruleset.ChainName(prefixSVL, id), ruleset.ChainName(prefixEXT, id)
	proto := strings.ToLower(string(sp.Protocol))
	match := []string{"-p", proto, "-m", proto}
	hasEndpoints := len(clusterEps) > 0
	usesExt := hasEndpoints && sp.HasExternal()
	usesSVL := len(localEps) > 0 && (sp.InternalLocal || (sp.ExternalLocal && usesExt))
	// The cluster chain also serves pods and the node reaching an
	// externalTrafficPolicy: Local service, which kube-proxy routes like
	// cluster traffic (they are not "external").
	usesSVC := hasEndpoints && (!sp.InternalLocal || (usesExt))

	internalChain := svc
	if sp.InternalLocal {
		internalChain = svl
	}
	clusterDst := append([]string{"-d", ruleset.HostCIDR(sp.ClusterIP)}, append(match, "--dport", portString(sp.Port))...)
	if len(internalEps) > 0 {
		g.nat(chainServices).Add(ruleset.Args(g.comment(sp.String()+" cluster IP"), clusterDst, []string{"-j", internalChain})...)
	}
	if usesExt {
		for _, a := range sp.ExternalIPs {
			g.nat(chainServices).Add(ruleset.Args(g.comment(sp.String()+" external IP"), []string{"-d", ruleset.HostCIDR(a)}, match, []string{"--dport", portString(sp.Port), "-j", ext})...)
		}
		for _, a := range sp.LoadBalancerIPs {
			g.nat(chainServices).Add(ruleset.Args(g.comment(sp.String()+" loadbalancer IP"), []string{"-d", ruleset.HostCIDR(a)}, match, []string{"--dport", portString(sp.Port), "-j", ext})...)
		}
		if sp.NodePort != 0 {
			g.nat(chainNodePorts).Add(ruleset.Args(g.comment(sp.String()), match, []string{"--dport", portString(sp.NodePort), "-j", ext})...)
		}
		g.extChain(sp, ext, svc, svl, len(localEps) > 0)
	}
	g.filterRules(sp, clusterDst, match, len(clusterEps), len(internalEps), len(externalEps))
	if usesSVC {
		c := g.nat(svc)
		if g.cfg.MasqueradeAll {
			c.Add(ruleset.Args(g.comment(sp.String()+" cluster IP"), clusterDst, []string{"-j", chainMarkMasq})...)
		} else if g.cfg.ClusterCIDR.IsValid() {
			c.Add(ruleset.Args(g.comment(sp.String()+" cluster IP"), clusterDst, []string{"!", "-s", g.cfg.ClusterCIDR.Masked().String(), "-j", chainMarkMasq})...)
		}
		g.balance(c, sp, clusterEps)
	}
	if usesSVL {
		g.balance(g.nat(svl), sp, localEps)
	}
	g.endpointChains(sp, proto, usesSVC, clusterEps, usesSVL, localEps)
}

// extChain routes traffic that arrived at a node port, external IP or
// load-balancer IP.
func (g *rulegen) extChain(sp *ServicePort, ext, svc, svl string, hasLocal bool) {
	c := g.nat(ext)
	if !sp.ExternalLocal {
		// Replies must come back through this node to be un-DNATed.
		c.Add(append(g.comment("masquerade traffic for "+sp.String()+" external destinations"), "-j", chainMarkMasq)...)
		c.Add("-j", svc)
		return
	}
	// Local policy keeps the client's address, so only this node's
	// endpoints may answer; pods and the node itself are not external
	// clients and get the cluster policy.
	if g.cfg.ClusterCIDR.IsValid() {
		c.Add(ruleset.Args(g.comment("pod traffic for "+sp.String()+" external destinations"), []string{"-s", g.cfg.ClusterCIDR.Masked().String(), "-j", svc})...)
	}
	c.Add(append(g.comment("masquerade LOCAL traffic for "+sp.String()+" external destinations"), "-m", "addrtype", "--src-type", "LOCAL", "-j", chainMarkMasq)...)
	c.Add(append(g.comment("route LOCAL traffic for "+sp.String()+" external destinations"), "-m", "addrtype", "--src-type", "LOCAL", "-j", svc)...)
	if hasLocal {
		c.Add("-j", svl)
	}
}

// filterRules rejects traffic to a port without endpoints (so that clients
// fail fast instead of timing out), and drops traffic a Local policy has
// no local endpoint for.
func (g *rulegen) filterRules(sp *ServicePort, clusterDst, match []string, cluster, internal, external int) {
	internalVerdict, externalVerdict := "", ""
	switch {
	case cluster == 0:
		internalVerdict, externalVerdict = "REJECT", "REJECT"
	default:
		if internal == 0 {
			internalVerdict = "DROP"
		}
		if external == 0 && sp.HasExternal() {
			externalVerdict = "DROP"
		}
	}
	why := map[string]string{"REJECT": " has no endpoints", "DROP": " has no local endpoints"}
	if internalVerdict != "" {
		g.filter(chainServices).Add(ruleset.Args(g.comment(sp.String()+why[internalVerdict]), clusterDst, []string{"-j", internalVerdict})...)
	}
	if externalVerdict == "" {
		return
	}
	comment := g.comment(sp.String() + why[externalVerdict])
	ext := g.filter(chainExternalServices)
	dport := []string{"--dport", portString(sp.Port), "-j", externalVerdict}
	for _, a := range sp.ExternalIPs {
		ext.Add(ruleset.Args(comment, []string{"-d", ruleset.HostCIDR(a)}, match, dport)...)
	}
	for _, a := range sp.LoadBalancerIPs {
		ext.Add(ruleset.Args(comment, []string{"-d", ruleset.HostCIDR(a)}, match, dport)...)
	}
	if sp.NodePort != 0 {
		ext.Add(ruleset.Args(comment, []string{"-m", "addrtype", "--dst-type", "LOCAL"}, match, []string{"--dport", portString(sp.NodePort), "-j", externalVerdict})...)
	}
}

// balance spreads new connections over eps: the i-th of n rules matches
// with probability 1/(n-i), which gives each endpoint 1/n. With ClientIP
// affinity, a client seen recently goes back to its endpoint first.
func (g *rulegen) balance(c *ruleset.Chain, sp *ServicePort, eps []Endpoint) {
	if sp.AffinitySeconds > 0 {
		for _, ep := range eps {
			sep := ruleset.ChainName(prefixSEP, sp.id()+ep.Addr.String())
			c.Add(ruleset.Args(g.comment(sp.String()+" -> "+ep.Addr.String()),
				[]string{"-m", "recent", "--name", sep, "--rcheck", "--seconds", fmt.Sprint(sp.AffinitySeconds), "--reap", "-j", sep})...)
		}
	}
	n := len(eps)
	for i, ep := range eps {
		sep := ruleset.ChainName(prefixSEP, sp.id()+ep.Addr.String())
		args := g.comment(sp.String() + " -> " + ep.Addr.String())
		if i < n-1 {
			args = append(args, "-m", "statistic", "--mode", "random", "--probability", fmt.Sprintf("%0.10f", 1.0/float64(n-i)))
		}
		c.Add(append(args, "-j", sep)...)
	}
}

// endpointsInUse are the endpoints the cluster and local policies send to,
// each once.
func endpointsInUse(cluster bool, clusterEps []Endpoint, local bool, localEps []Endpoint) []Endpoint {
	seen := map[netip.AddrPort]bool{}
	var out []Endpoint
	add := func(eps []Endpoint) {
		for _, ep := range eps {
			if !seen[ep.Addr] {
				seen[ep.Addr] = true
				out = append(out, ep)
			}
		}
	}
	if cluster {
		add(clusterEps)
	}
	if local {
		add(localEps)
	}
	return out
}

// endpointChains writes one DNAT chain per endpoint in use.
func (g *rulegen) endpointChains(sp *ServicePort, proto string, cluster bool, clusterEps []Endpoint, local bool, localEps []Endpoint) {
	for _, ep := range endpointsInUse(cluster, clusterEps, local, localEps) {
		sep := ruleset.ChainName(prefixSEP, sp.id()+ep.Addr.String())
		c := g.nat(sep)
		comment := g.comment(sp.String())
		// A pod reaching itself through the service (hairpin) must see
		// the reply come from the service address.
		c.Add(ruleset.Args(comment, []string{"-s", ruleset.HostCIDR(ep.Addr.Addr()), "-j", chainMarkMasq})...)
		args := comment
		if sp.AffinitySeconds > 0 {
			args = append(args, "-m", "recent", "--name", sep, "--set", "--rsource")
		}
		c.Add(append(args, "-p", proto, "-m", proto, "-j", "DNAT", "--to-destination", ep.Addr.String())...)
	}
}
