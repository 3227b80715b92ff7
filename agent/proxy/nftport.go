package proxy

import (
	"net/netip"
	"strings"
)

// port writes one service port: its map elements and its chains. The
// routing is the iptables mode's (see rulegen.port), expressed as map
// elements instead of rules in shared chains.
func (g *nftgen) port(sp *ServicePort) {
	clusterEps, localEps := sp.ClusterEndpoints(), sp.LocalEndpoints()
	internalEps, externalEps := clusterEps, clusterEps
	if sp.InternalLocal {
		internalEps = localEps
	}
	if sp.ExternalLocal {
		externalEps = localEps
	}
	id, readable := sp.id(), sp.nftReadable()
	svc, svl, ext := nftName(nftSvcPrefix, id, readable), nftName(nftSvlPrefix, id, readable), nftName(nftExtPrefix, id, readable)
	proto := strings.ToLower(string(sp.Protocol))
	hasEndpoints := len(clusterEps) > 0
	usesExt := hasEndpoints && sp.HasExternal()
	usesSVL := len(localEps) > 0 && (sp.InternalLocal || (sp.ExternalLocal && usesExt))
	// The cluster chain also serves pods and the node reaching an
	// externalTrafficPolicy: Local service (they are not "external").
	usesSVC := hasEndpoints && (!sp.InternalLocal || usesExt)

	internalChain := svc
	if sp.InternalLocal {
		internalChain = svl
	}
	clusterKey := addrKey(sp.ClusterIP, proto, sp.Port)
	if len(internalEps) > 0 {
		g.elem(nftServiceIPs, clusterKey, gotoTo(internalChain))
	}
	if usesExt {
		for _, a := range externalAddrs(sp) {
			g.elem(nftServiceIPs, addrKey(a, proto, sp.Port), gotoTo(ext))
		}
		if sp.NodePort != 0 {
			g.elem(nftServiceNodePorts, nftKey{Proto: proto, Port: sp.NodePort}, gotoTo(ext))
		}
		g.extChain(sp, ext, svc, svl, len(localEps) > 0)
	}
	g.noEndpoints(sp, proto, clusterKey, len(clusterEps), len(internalEps), len(externalEps))
	if usesSVC {
		if g.cfg.MasqueradeAll {
			g.add(svc, g.r().addrIs(false, sp.ClusterIP).dport(proto, sp.Port).markForMasquerade(g.cfg.MasqueradeMark))
		} else if g.cfg.ClusterCIDR.IsValid() {
			g.add(svc, g.r().addrIs(false, sp.ClusterIP).dport(proto, sp.Port).addr(true, g.cfg.ClusterCIDR, true).markForMasquerade(g.cfg.MasqueradeMark))
		}
		g.balance(svc, sp, proto, clusterEps, "svc")
	}
	if usesSVL {
		g.balance(svl, sp, proto, localEps, "svl")
	}
	if sp.AffinitySeconds > 0 {
		g.endpointChains(sp, proto, usesSVC, clusterEps, usesSVL, localEps)
	} else {
		g.hairpin(usesSVC, clusterEps, usesSVL, localEps)
	}
	// A pick not made (policy, endpoints or affinity changed) gives its
	// block back.
	for _, pick := range []struct {
		name string
		used bool
	}{{"svc", usesSVC}, {"svl", usesSVL}} {
		if !pick.used || sp.AffinitySeconds > 0 {
			g.blocks.release(blockOwner(sp, pick.name))
		}
	}
	clear(g.epNames)
}

// blockOwner names a port's cluster ("svc") or local ("svl") pick in the
// endpoints-map blocks.
func blockOwner(sp *ServicePort, pick string) string { return sp.id() + "|" + pick }

func externalAddrs(sp *ServicePort) []netip.Addr {
	return append(append([]netip.Addr{}, sp.ExternalIPs...), sp.LoadBalancerIPs...)
}

// extChain routes traffic that arrived at a node port, external IP or
// load-balancer IP.
func (g *nftgen) extChain(sp *ServicePort, ext, svc, svl string, hasLocal bool) {
	g.chain(ext)
	if !sp.ExternalLocal {
		// Replies must come back through this node to be un-DNATed.
		g.add(ext, g.r().markForMasquerade(g.cfg.MasqueradeMark))
		g.add(ext, g.r().verdict(gotoTo(svc)))
		return
	}
	// Local policy keeps the client's address, so only this node's
	// endpoints may answer; pods and the node itself are not external
	// clients and get the cluster policy.
	if g.cfg.ClusterCIDR.IsValid() {
		g.add(ext, g.r().addr(true, g.cfg.ClusterCIDR, false).verdict(gotoTo(svc)))
	}
	g.add(ext, g.r().fibLocal(true).markForMasquerade(g.cfg.MasqueradeMark))
	g.add(ext, g.r().fibLocal(true).verdict(gotoTo(svc)))
	if hasLocal {
		g.add(ext, g.r().verdict(gotoTo(svl)))
	}
}

// noEndpoints rejects traffic to a port without endpoints (clients fail
// fast instead of timing out) and drops traffic a Local policy has no
// local endpoint for. The filter chains look these up after DNAT, so only
// traffic that no service chain translated matches.
func (g *nftgen) noEndpoints(sp *ServicePort, proto string, clusterKey nftKey, cluster, internal, external int) {
	var internalVerdict, externalVerdict *nftVerdict // nil: no element
	switch {
	case cluster == 0:
		reject := gotoTo(nftRejectChain)
		internalVerdict, externalVerdict = &reject, &reject
	default:
		if internal == 0 {
			internalVerdict = &verdictDrop
		}
		if external == 0 && sp.HasExternal() {
			externalVerdict = &verdictDrop
		}
	}
	if internalVerdict != nil {
		g.elem(nftNoEndpoints, clusterKey, *internalVerdict)
	}
	if externalVerdict == nil {
		return
	}
	for _, a := range externalAddrs(sp) {
		g.elem(nftNoEndpoints, addrKey(a, proto, sp.Port), *externalVerdict)
	}
	if sp.NodePort != 0 {
		g.elem(nftNoEndpointPorts, nftKey{Proto: proto, Port: sp.NodePort}, *externalVerdict)
	}
}

// balance spreads new connections over eps, each 1/n. Without ClientIP
// affinity one rule DNATs to the element of an endpoints map at a random
// index of the port's block: replacing an endpoint then changes a map
// element, not a rule. (Not an anonymous map per port: the kernel names a
// new anonymous set by scanning all the table's sets, quadratic in
// services; nor one map for all ports, see nftEndpointsShard.) With
// affinity, whose endpoint chains record the client, a client seen
// recently goes back to its endpoint first, and the i-th of n rules
// matches with probability 1/(n-i), as the iptables mode's statistic
// rules.
func (g *nftgen) balance(chain string, sp *ServicePort, proto string, eps []Endpoint, pick string) {
	if sp.AffinitySeconds == 0 {
		addrs := make([]netip.AddrPort, len(eps))
		for i, ep := range eps {
			addrs[i] = ep.Addr
		}
		start, slots, err := g.blocks.place(blockOwner(sp, pick), addrs)
		if err != nil {
			if g.err == nil {
				g.err = err
			}
			return
		}
		m := endpointsMap(start)
		g.t.MapTypes[m] = mapEndpoints
		for i, a := range slots {
			g.t.Endpoints[start+uint32(i)] = nftEndpoint{Map: m, Addr: a}
		}
		g.add(chain, g.r().l4proto(proto).dnatMap(len(eps), start, m).done())
		return
	}
	for _, ep := range eps {
		g.add(chain, g.r().saddrInSet(g.affinitySet(sp, ep)).verdict(gotoTo(g.epChain(sp, ep))))
	}
	for i, ep := range eps {
		r := g.r()
		if n := len(eps) - i; n > 1 {
			r.random(n)
		}
		g.add(chain, r.verdict(gotoTo(g.epChain(sp, ep))))
	}
}

// hairpin adds the endpoints in use to the hairpin set: the masquerading
// chain masquerades DNATed traffic from one of them to itself.
func (g *nftgen) hairpin(cluster bool, clusterEps []Endpoint, local bool, localEps []Endpoint) {
	for _, ep := range endpointsInUse(cluster, clusterEps, local, localEps) {
		g.t.Hairpin[ep.Addr.Addr().Unmap()] = struct{}{}
	}
}

// endpointChains writes one DNAT chain per endpoint in use (ClientIP
// affinity: each records its clients).
func (g *nftgen) endpointChains(sp *ServicePort, proto string, cluster bool, clusterEps []Endpoint, local bool, localEps []Endpoint) {
	for _, ep := range endpointsInUse(cluster, clusterEps, local, localEps) {
		c := g.epChain(sp, ep)
		// A pod reaching itself through the service (hairpin) must see
		// the reply come from the service address.
		g.add(c, g.r().addrIs(true, ep.Addr.Addr()).markForMasquerade(g.cfg.MasqueradeMark))
		if sp.AffinitySeconds > 0 {
			set := g.affinitySet(sp, ep)
			g.t.Sets[set] = sp.AffinitySeconds
			g.add(c, g.r().updateSet(set).done())
		}
		g.add(c, g.r().l4proto(proto).dnat(ep.Addr).done())
	}
}
