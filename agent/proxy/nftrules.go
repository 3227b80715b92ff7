package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/agent/internal/ruleset"
)

// NFTTableName is the proxy's nftables table, one per family ("ip keelson",
// "ip6 keelson"). Everything in it belongs to the proxy.
const NFTTableName = "keelson"

// The nftables mode keeps service lookups in verdict maps, so that a
// service or endpoint change rewrites map elements and the chains of that
// one service, never a list of rules the kernel walks one by one
// (kube-proxy's nftables mode is the model).
const (
	nftServices                = "services"                 // nat: exempt addresses, the two lookups below
	nftServiceIPs              = "service-ips"              // map: address . proto . port -> goto a service chain
	nftServiceNodePorts        = "service-nodeports"        // map: proto . port -> goto an external chain
	nftNoEndpoints             = "no-endpoint-services"     // map: address . proto . port -> reject or drop
	nftNoEndpointPorts         = "no-endpoint-nodeports"    // map: proto . port -> reject or drop
	nftEndpointsCheck          = "service-endpoints-check"  // filter: looks up no-endpoint-services
	nftNodePortsCheck          = "nodeport-endpoints-check" // filter: looks up no-endpoint-nodeports
	nftMasquerading            = "masquerading"             // nat: masquerade marked traffic
	nftMarkForMasquerade       = "mark-for-masquerade"      // sets the masquerade bit
	nftRejectChain             = "reject-chain"             // a verdict map's way to reject
	nftSvcPrefix               = "svc-"                     // one per service port, cluster policy
	nftSvlPrefix               = "svl-"                     // one per service port, local policy
	nftExtPrefix               = "ext-"                     // one per service port reachable from outside
	nftEpPrefix                = "ep-"                      // one per service port endpoint
	nftAffinityPrefix          = "aff-"                     // one set per endpoint under ClientIP affinity
	nftBasePriorityNAT         = -100                       // dstnat, as iptables' nat table
	nftBasePriorityFiltr       = -10                        // before iptables' filter table (0)
	nftPriorityPostNAT         = 100                        // srcnat
	nftLoopback4, nftLoopback6 = "127.0.0.0/8", "::1"       // node ports are not served on loopback
)

// NFTTable is the content of the proxy's table for one family: a pure
// value, so that a sync is the difference of two of them.
type NFTTable struct {
	Family v1.IPFamily
	// Base are the chains hooked into netfilter, with their hook spec.
	Base map[string]string
	// Chains holds every chain's rules (base chains included), each rule
	// as written after "add rule <family> keelson <chain>".
	Chains map[string][]string
	// Maps are the verdict maps' types and elements (key -> verdict).
	MapTypes map[string]string
	Maps     map[string]map[string]string
	// Sets are the ClientIP affinity sets and their spec; the kernel fills
	// them, so a sync never rewrites one that exists.
	Sets map[string]string
}

// Rules counts the rules and map elements of the table.
func (t *NFTTable) Rules() int {
	n := 0
	for _, rs := range t.Chains {
		n += len(rs)
	}
	for _, m := range t.Maps {
		n += len(m)
	}
	return n
}

// NFTRules computes the proxy's table for ports; cfg as for Rules
// (NoComments and RandomFully aside: the table carries no comments, and
// masquerade is always fully random).
func NFTRules(ports []ServicePort, cfg RulesConfig) *NFTTable {
	g := &nftgen{cfg: cfg, epNames: map[netip.AddrPort]string{}, t: &NFTTable{Family: cfg.Family, Base: map[string]string{}, Chains: map[string][]string{},
		MapTypes: map[string]string{}, Maps: map[string]map[string]string{}, Sets: map[string]string{}}}
	g.ip, g.addrType, g.loopback = "ip", "ipv4_addr", nftLoopback4
	if cfg.Family == v1.IPv6Protocol {
		g.ip, g.addrType, g.loopback = "ip6", "ipv6_addr", nftLoopback6
	}
	g.fixed()
	for i := range ports {
		g.port(&ports[i])
	}
	return g.t
}

type nftgen struct {
	cfg                    RulesConfig
	t                      *NFTTable
	ip, addrType, loopback string
	epNames                map[netip.AddrPort]string // the current port's endpoint chains
}

func (g *nftgen) add(chain string, rule ...string) {
	g.t.Chains[chain] = append(g.t.Chains[chain], strings.Join(rule, " "))
}

func (g *nftgen) chain(name string) { // an empty chain exists too
	if _, ok := g.t.Chains[name]; !ok {
		g.t.Chains[name] = nil
	}
}

func (g *nftgen) elem(m, key, verdict string) { g.t.Maps[m][key] = verdict }

// fixed writes the chains and maps every node has.
func (g *nftgen) fixed() {
	base := func(name, kind, hook string, prio int, rules ...string) {
		g.t.Base[name] = fmt.Sprintf("{ type %s hook %s priority %d ; policy accept ; }", kind, hook, prio)
		g.chain(name)
		for _, r := range rules {
			g.add(name, r)
		}
	}
	newConn := "ct state new jump "
	base("nat-prerouting", "nat", "prerouting", nftBasePriorityNAT, "jump "+nftServices)
	base("nat-output", "nat", "output", nftBasePriorityNAT, "jump "+nftServices)
	base("nat-postrouting", "nat", "postrouting", nftPriorityPostNAT, "jump "+nftMasquerading)
	// Packets conntrack cannot place would bypass DNAT's reverse
	// translation and reach clients with a pod's address: drop them.
	base("filter-forward", "filter", "forward", nftBasePriorityFiltr,
		"ct state invalid drop", newConn+nftEndpointsCheck, newConn+nftNodePortsCheck)
	base("filter-input", "filter", "input", nftBasePriorityFiltr, newConn+nftNodePortsCheck, newConn+nftEndpointsCheck)
	base("filter-output", "filter", "output", nftBasePriorityFiltr, newConn+nftEndpointsCheck)

	addrKey := g.addrType + " . inet_proto . inet_service : verdict"
	portKey := "inet_proto . inet_service : verdict"
	for name, typ := range map[string]string{nftServiceIPs: addrKey, nftNoEndpoints: addrKey, nftServiceNodePorts: portKey, nftNoEndpointPorts: portKey} {
		g.t.MapTypes[name] = typ
		g.t.Maps[name] = map[string]string{}
	}
	for _, c := range []string{nftServices, nftEndpointsCheck, nftNodePortsCheck} {
		g.chain(c)
	}
	var exempt []string
	for _, a := range g.cfg.Exempt {
		if ruleset.IsFamily(a, g.cfg.Family) {
			exempt = append(exempt, a.Unmap().String())
		}
	}
	if len(exempt) > 0 { // served by the node itself
		ret := g.ip + " daddr { " + strings.Join(exempt, ", ") + " } return"
		g.add(nftServices, ret)
		g.add(nftEndpointsCheck, ret)
	}
	g.add(nftServices, g.ip+" daddr . meta l4proto . th dport vmap @"+nftServiceIPs)
	g.add(nftEndpointsCheck, g.ip+" daddr . meta l4proto . th dport vmap @"+nftNoEndpoints)
	for _, dst := range g.nodePortDests() {
		g.add(nftServices, dst+" meta l4proto . th dport vmap @"+nftServiceNodePorts)
		g.add(nftNodePortsCheck, dst+" meta l4proto . th dport vmap @"+nftNoEndpointPorts)
	}

	mark := fmt.Sprintf("%#x", g.cfg.MasqueradeMark)
	g.add(nftMasquerading, "meta mark &", mark, "== 0 return")
	// Clear the bit so that a packet re-entering the stack (e.g. over a
	// tunnel or a bridge) is not masqueraded twice.
	g.add(nftMasquerading, "meta mark set meta mark ^", mark)
	g.add(nftMasquerading, "masquerade fully-random")
	g.add(nftMarkForMasquerade, "meta mark set meta mark |", mark)
	g.add(nftRejectChain, "reject")
}

// nodePortDests are the destination matches under which node ports are
// looked up: local addresses but loopback (reaching it would need
// route_localnet), or the configured ranges.
func (g *nftgen) nodePortDests() []string {
	if len(g.cfg.NodePortAddresses) == 0 {
		return []string{"fib daddr type local " + g.ip + " daddr != " + g.loopback}
	}
	var out []string
	for _, p := range g.cfg.NodePortAddresses {
		if ruleset.IsFamily(p.Addr(), g.cfg.Family) {
			out = append(out, g.ip+" daddr "+p.Masked().String())
		}
	}
	return out
}

// nftName is a chain or set name: prefix, a hash of id (names are unique
// whatever readable says) and a readable part without the characters nft
// identifiers do not take.
func nftName(prefix, id, readable string) string {
	h := sha256.Sum256([]byte(id))
	name := prefix + base32.StdEncoding.EncodeToString(h[:])[:8]
	if readable == "" {
		return name
	}
	return name + "-" + nftUnsafe.Replace(readable)
}

// nftUnsafe maps the characters of addresses that nft identifiers do not
// take; read-only, so shared.
var nftUnsafe = strings.NewReplacer(":", ".", "[", "", "]", "")

func (sp *ServicePort) nftReadable() string {
	return sp.Namespace + "/" + sp.Name + "/" + strings.ToLower(string(sp.Protocol)) + "/" + cmpString(sp.PortName, "-")
}

func cmpString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// epChain names the chain of one endpoint of sp, hashed once per port.
func (g *nftgen) epChain(sp *ServicePort, ep Endpoint) string {
	if name, ok := g.epNames[ep.Addr]; ok {
		return name
	}
	name := g.epChainName(sp, ep)
	g.epNames[ep.Addr] = name
	return name
}

func (g *nftgen) epChainName(sp *ServicePort, ep Endpoint) string {
	return nftName(nftEpPrefix, sp.id()+"|"+ep.Addr.String(), sp.nftReadable()+"__"+ep.Addr.Addr().String()+"/"+strconv.Itoa(int(ep.Addr.Port())))
}

func (g *nftgen) affinitySet(sp *ServicePort, ep Endpoint) string {
	// The timeout is part of the name: a changed timeout is a new set,
	// since an existing set's timeout cannot be changed in place.
	return nftName(nftAffinityPrefix, sp.id()+"|"+ep.Addr.String()+"|"+strconv.Itoa(int(sp.AffinitySeconds)), "")
}

// addrKey is a service-ips key: address . protocol . port.
func addrKey(a netip.Addr, proto string, port int32) string {
	return a.Unmap().String() + " . " + proto + " . " + strconv.Itoa(int(port))
}
