package proxy

import (
	"fmt"
	"net/netip"
	"strconv"
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
		g.elem(nftServiceIPs, clusterKey, "goto "+internalChain)
	}
	if usesExt {
		for _, a := range externalAddrs(sp) {
			g.elem(nftServiceIPs, addrKey(a, proto, sp.Port), "goto "+ext)
		}
		if sp.NodePort != 0 {
			g.elem(nftServiceNodePorts, proto+" . "+strconv.Itoa(int(sp.NodePort)), "goto "+ext)
		}
		g.extChain(sp, ext, svc, svl, len(localEps) > 0)
	}
	g.noEndpoints(sp, proto, clusterKey, len(clusterEps), len(internalEps), len(externalEps))
	if usesSVC {
		if g.cfg.MasqueradeAll {
			g.add(svc, g.ip, "daddr", sp.ClusterIP.Unmap().String(), proto, "dport", strconv.Itoa(int(sp.Port)), "jump", nftMarkForMasquerade)
		} else if g.cfg.ClusterCIDR.IsValid() {
			g.add(svc, g.ip, "daddr", sp.ClusterIP.Unmap().String(), proto, "dport", strconv.Itoa(int(sp.Port)),
				g.ip, "saddr !=", g.cfg.ClusterCIDR.Masked().String(), "jump", nftMarkForMasquerade)
		}
		g.balance(svc, sp, clusterEps)
	}
	if usesSVL {
		g.balance(svl, sp, localEps)
	}
	g.endpointChains(sp, proto, usesSVC, clusterEps, usesSVL, localEps)
	clear(g.epNames)
}

func externalAddrs(sp *ServicePort) []netip.Addr {
	return append(append([]netip.Addr{}, sp.ExternalIPs...), sp.LoadBalancerIPs...)
}

// extChain routes traffic that arrived at a node port, external IP or
// load-balancer IP.
func (g *nftgen) extChain(sp *ServicePort, ext, svc, svl string, hasLocal bool) {
	g.chain(ext)
	if !sp.ExternalLocal {
		// Replies must come back through this node to be un-DNATed.
		g.add(ext, "jump", nftMarkForMasquerade)
		g.add(ext, "goto", svc)
		return
	}
	// Local policy keeps the client's address, so only this node's
	// endpoints may answer; pods and the node itself are not external
	// clients and get the cluster policy.
	if g.cfg.ClusterCIDR.IsValid() {
		g.add(ext, g.ip, "saddr", g.cfg.ClusterCIDR.Masked().String(), "goto", svc)
	}
	g.add(ext, "fib saddr type local jump", nftMarkForMasquerade)
	g.add(ext, "fib saddr type local goto", svc)
	if hasLocal {
		g.add(ext, "goto", svl)
	}
}

// noEndpoints rejects traffic to a port without endpoints (clients fail
// fast instead of timing out) and drops traffic a Local policy has no
// local endpoint for. The filter chains look these up after DNAT, so only
// traffic that no service chain translated matches.
func (g *nftgen) noEndpoints(sp *ServicePort, proto, clusterKey string, cluster, internal, external int) {
	internalVerdict, externalVerdict := "", ""
	switch {
	case cluster == 0:
		internalVerdict, externalVerdict = "goto "+nftRejectChain, "goto "+nftRejectChain
	default:
		if internal == 0 {
			internalVerdict = "drop"
		}
		if external == 0 && sp.HasExternal() {
			externalVerdict = "drop"
		}
	}
	if internalVerdict != "" {
		g.elem(nftNoEndpoints, clusterKey, internalVerdict)
	}
	if externalVerdict == "" {
		return
	}
	for _, a := range externalAddrs(sp) {
		g.elem(nftNoEndpoints, addrKey(a, proto, sp.Port), externalVerdict)
	}
	if sp.NodePort != 0 {
		g.elem(nftNoEndpointPorts, proto+" . "+strconv.Itoa(int(sp.NodePort)), externalVerdict)
	}
}

// balance spreads new connections over eps with one random number per
// connection and a verdict map over it, which gives each endpoint 1/n
// with one rule however many endpoints there are. With ClientIP affinity
// a client seen recently goes back to its endpoint first.
func (g *nftgen) balance(chain string, sp *ServicePort, eps []Endpoint) {
	if sp.AffinitySeconds > 0 {
		for _, ep := range eps {
			g.add(chain, g.ip, "saddr", "@"+g.affinitySet(sp, ep), "goto", g.epChain(sp, ep))
		}
	}
	arms := make([]string, len(eps))
	for i, ep := range eps {
		arms[i] = strconv.Itoa(i) + " : goto " + g.epChain(sp, ep)
	}
	g.add(chain, "numgen random mod", strconv.Itoa(len(eps)), "vmap {", strings.Join(arms, ", "), "}")
}

// endpointChains writes one DNAT chain per endpoint in use.
func (g *nftgen) endpointChains(sp *ServicePort, proto string, cluster bool, clusterEps []Endpoint, local bool, localEps []Endpoint) {
	for _, ep := range endpointsInUse(cluster, clusterEps, local, localEps) {
		c := g.epChain(sp, ep)
		// A pod reaching itself through the service (hairpin) must see
		// the reply come from the service address.
		g.add(c, g.ip, "saddr", ep.Addr.Addr().Unmap().String(), "jump", nftMarkForMasquerade)
		if sp.AffinitySeconds > 0 {
			set := g.affinitySet(sp, ep)
			g.t.Sets[set] = fmt.Sprintf("{ type %s ; flags dynamic,timeout ; timeout %ds ; }", g.addrType, sp.AffinitySeconds)
			g.add(c, "update", "@"+set, "{", g.ip, "saddr }")
		}
		dst := ep.Addr.String() // a.b.c.d:port, [x::y]:port
		g.add(c, "meta l4proto", proto, "dnat to", dst)
	}
}
