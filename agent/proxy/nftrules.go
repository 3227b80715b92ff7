package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"maps"
	"net/netip"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/agent/internal/nftlink"
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
	nftEndpointsPrefix         = "endpoints-"               // maps: index -> address . port, see nftBlocks
	nftHairpin                 = "hairpin"                  // set: endpoint . endpoint, see endpointElements
	nftRejectChain             = "reject-chain"             // a verdict map's way to reject
	nftSvcPrefix               = "svc-"                     // one per service port, cluster policy
	nftSvlPrefix               = "svl-"                     // one per service port, local policy
	nftExtPrefix               = "ext-"                     // one per service port reachable from outside
	nftEpPrefix                = "ep-"                      // one per endpoint of a ClientIP-affinity port
	nftAffinityPrefix          = "aff-"                     // one set per endpoint under ClientIP affinity
	nftBasePriorityNAT         = -100                       // dstnat, as iptables' nat table
	nftBasePriorityFiltr       = -10                        // before iptables' filter table (0)
	nftPriorityPostNAT         = 100                        // srcnat
	nftLoopback4, nftLoopback6 = "127.0.0.0/8", "::1/128"   // node ports are not served on loopback
)

// NFTTable is the content of the proxy's table for one family (or, in
// the dataplane's bookkeeping, the part of it one service port makes): a
// pure value, so that a sync is the difference of two of them.
type NFTTable struct {
	Family v1.IPFamily
	// Base are the chains hooked into netfilter, with their hook spec.
	Base map[string]nftBase
	// Chains holds every chain's rules (base chains included).
	Chains map[string][]NFTRule
	// MapTypes are the maps' and fixed sets' types; Maps the verdict
	// maps' elements.
	MapTypes map[string]nftMapKind
	Maps     map[string]map[nftKey]nftVerdict
	// Endpoints are the endpoints maps' elements by index.
	Endpoints map[uint32]nftEndpoint
	// Hairpin are the endpoints whose traffic to themselves, DNATed, is
	// masqueraded (elements "a . a" of the hairpin set).
	Hairpin map[netip.Addr]struct{}
	// Sets are the ClientIP affinity sets and their timeouts in seconds;
	// the kernel fills them, so a sync never rewrites one that exists.
	Sets map[string]int32
}

// nftEndpoint is an element of an endpoints map: the map, the endpoint.
type nftEndpoint struct {
	Map  string
	Addr netip.AddrPort
}

// nftEndpointsShard is log2 of the indexes of one endpoints map. The
// kernel checks every element of a map against every rule that looks it
// up, when the rule is added and when an element is: one map for all
// services would make programming them quadratic (seconds at 10,000
// services), a map per service would cost a set lookup by name per
// creation. A map per 256 indexes keeps both small.
const nftEndpointsShard = 8

// endpointsMap names the map of the block that starts at start. A block
// larger than a shard is the only one in the shards it spans (blocks are
// aligned to their size), so its elements all go to its first shard's map.
// A sync creates the maps its ports need (adding a map that exists is a
// no-op); an emptied map stays until the next full sync deletes it.
func endpointsMap(start uint32) string {
	return nftEndpointsPrefix + strconv.Itoa(int(start>>nftEndpointsShard))
}

// nftBase is a base chain's hook.
type nftBase struct {
	Type, Hook string
	Priority   int
}

func (b nftBase) String() string {
	return fmt.Sprintf("{ type %s hook %s priority %d ; policy accept ; }", b.Type, b.Hook, b.Priority)
}

// nftMapKind is a map's or fixed set's type: a verdict map keyed by
// address . protocol . port or by protocol . port (node ports), the
// endpoints data map (index : address . port) or the hairpin set
// (address . address).
type nftMapKind int

const (
	mapAddrProtoPort nftMapKind = iota
	mapProtoPort
	mapEndpoints
	setHairpin
)

// nftKey is a verdict map's key; Addr is invalid in protocol . port keys.
type nftKey struct {
	Addr  netip.Addr
	Proto string
	Port  int32
}

func (k nftKey) String() string {
	s := k.Proto + " . " + strconv.Itoa(int(k.Port))
	if k.Addr.IsValid() {
		s = k.Addr.String() + " . " + s
	}
	return s
}

// bytes is the key as the kernel stores it: each field padded to 32 bits.
func (k nftKey) bytes() []byte {
	var b []byte
	if k.Addr.IsValid() {
		b = append(b, k.Addr.AsSlice()...)
	}
	return append(b, nftlink.ProtoNumber(k.Proto), 0, 0, 0, byte(k.Port>>8), byte(k.Port), 0, 0)
}

func newNFTTable(f v1.IPFamily) *NFTTable {
	return &NFTTable{Family: f, Base: map[string]nftBase{}, Chains: map[string][]NFTRule{},
		MapTypes: map[string]nftMapKind{}, Maps: map[string]map[nftKey]nftVerdict{}, Sets: map[string]int32{},
		Endpoints: map[uint32]nftEndpoint{}, Hairpin: map[netip.Addr]struct{}{}}
}

// Rules counts the rules and map elements of the table (not the hairpin
// set's, which service ports share).
func (t *NFTTable) Rules() int {
	n := len(t.Endpoints)
	for _, rs := range t.Chains {
		n += len(rs)
	}
	for _, m := range t.Maps {
		n += len(m)
	}
	return n
}

// merge adds o's chains, elements and sets to t (o's take precedence).
func (t *NFTTable) merge(o *NFTTable) {
	maps.Copy(t.Base, o.Base)
	maps.Copy(t.Chains, o.Chains)
	maps.Copy(t.MapTypes, o.MapTypes)
	maps.Copy(t.Sets, o.Sets)
	maps.Copy(t.Endpoints, o.Endpoints)
	maps.Copy(t.Hairpin, o.Hairpin)
	for m, elems := range o.Maps {
		if t.Maps[m] == nil {
			t.Maps[m] = map[nftKey]nftVerdict{}
		}
		maps.Copy(t.Maps[m], elems)
	}
}

// NFTRules computes the proxy's table for ports; cfg as for Rules
// (NoComments and RandomFully aside: the table carries no comments, and
// masquerade is always fully random). Endpoints-map blocks are allocated
// from zero, in the order of ports.
func NFTRules(ports []ServicePort, cfg RulesConfig) (*NFTTable, error) {
	t := NFTFixed(cfg)
	g := newNFTGen(cfg, t, newNFTBlocks())
	for i := range ports {
		g.port(&ports[i])
	}
	return t, g.err
}

// NFTFixed is the part of the table that does not depend on services.
func NFTFixed(cfg RulesConfig) *NFTTable {
	t := newNFTTable(cfg.Family)
	newNFTGen(cfg, t, nil).fixed()
	return t
}

// NFTPort is the part of the table that one service port makes: its
// chains, map elements and affinity sets. Its endpoints-map blocks come
// from (and, when no longer used, go back to) blocks.
func NFTPort(sp *ServicePort, cfg RulesConfig, blocks *nftBlocks) (*NFTTable, error) {
	t := newNFTTable(cfg.Family)
	g := newNFTGen(cfg, t, blocks)
	g.port(sp)
	return t, g.err
}

func newNFTGen(cfg RulesConfig, t *NFTTable, blocks *nftBlocks) *nftgen {
	g := &nftgen{cfg: cfg, epNames: map[netip.AddrPort]string{}, t: t, blocks: blocks}
	g.ip, g.loopback = "ip", netip.MustParsePrefix(nftLoopback4)
	if cfg.Family == v1.IPv6Protocol {
		g.ip, g.loopback = "ip6", netip.MustParsePrefix(nftLoopback6)
	}
	return g
}

type nftgen struct {
	cfg      RulesConfig
	t        *NFTTable
	ip       string
	loopback netip.Prefix
	epNames  map[netip.AddrPort]string // the current port's endpoint chains
	blocks   *nftBlocks
	err      error // the first block that could not be placed
}

func (g *nftgen) r() *rule { return newRule(g.cfg.Family) }

func (g *nftgen) add(chain string, r NFTRule) {
	g.t.Chains[chain] = append(g.t.Chains[chain], r)
}

func (g *nftgen) chain(name string) { // an empty chain exists too
	if _, ok := g.t.Chains[name]; !ok {
		g.t.Chains[name] = nil
	}
}

func (g *nftgen) elem(m string, key nftKey, v nftVerdict) {
	if g.t.Maps[m] == nil {
		g.t.Maps[m] = map[nftKey]nftVerdict{}
	}
	g.t.Maps[m][key] = v
}

// fixed writes the chains and maps every node has.
func (g *nftgen) fixed() {
	base := func(name, kind, hook string, prio int, rules ...NFTRule) {
		g.t.Base[name] = nftBase{Type: kind, Hook: hook, Priority: prio}
		g.chain(name)
		for _, r := range rules {
			g.add(name, r)
		}
	}
	newConn := func(c string) NFTRule { return g.r().ctState("new").verdict(jumpTo(c)) }
	base("nat-prerouting", "nat", "prerouting", nftBasePriorityNAT, g.r().verdict(jumpTo(nftServices)))
	base("nat-output", "nat", "output", nftBasePriorityNAT, g.r().verdict(jumpTo(nftServices)))
	base("nat-postrouting", "nat", "postrouting", nftPriorityPostNAT, g.r().verdict(jumpTo(nftMasquerading)))
	// Packets conntrack cannot place would bypass DNAT's reverse
	// translation and reach clients with a pod's address: drop them.
	base("filter-forward", "filter", "forward", nftBasePriorityFiltr,
		g.r().ctState("invalid").verdict(verdictDrop), newConn(nftEndpointsCheck), newConn(nftNodePortsCheck))
	base("filter-input", "filter", "input", nftBasePriorityFiltr, newConn(nftNodePortsCheck), newConn(nftEndpointsCheck))
	base("filter-output", "filter", "output", nftBasePriorityFiltr, newConn(nftEndpointsCheck))

	for name, kind := range map[string]nftMapKind{nftServiceIPs: mapAddrProtoPort, nftNoEndpoints: mapAddrProtoPort,
		nftServiceNodePorts: mapProtoPort, nftNoEndpointPorts: mapProtoPort} {
		g.t.MapTypes[name] = kind
		g.t.Maps[name] = map[nftKey]nftVerdict{}
	}
	g.t.MapTypes[nftHairpin] = setHairpin
	for _, c := range []string{nftServices, nftEndpointsCheck, nftNodePortsCheck} {
		g.chain(c)
	}
	for _, a := range g.cfg.Exempt { // served by the node itself
		if ruleset.IsFamily(a, g.cfg.Family) {
			g.add(nftServices, g.r().addrIs(false, a).verdict(verdictReturn))
			g.add(nftEndpointsCheck, g.r().addrIs(false, a).verdict(verdictReturn))
		}
	}
	g.add(nftServices, g.r().vmapAddrProtoPort(nftServiceIPs).done())
	g.add(nftEndpointsCheck, g.r().vmapAddrProtoPort(nftNoEndpoints).done())
	for _, dst := range g.nodePortDests() {
		g.add(nftServices, dst().vmapProtoPort(nftServiceNodePorts).done())
		g.add(nftNodePortsCheck, dst().vmapProtoPort(nftNoEndpointPorts).done())
	}

	mark := g.cfg.MasqueradeMark
	// A pod reaching itself through a service must see the reply come
	// from the service address (hairpin): DNATed traffic whose source is
	// its destination, an endpoint of the hairpin set. (Endpoints of
	// ClientIP-affinity ports are marked in their endpoint chains.)
	g.add(nftMasquerading, g.r().ctStatusDNAT().hairpinLookup(nftHairpin).markForMasquerade(mark))
	g.add(nftMasquerading, g.r().markUnset(mark).verdict(verdictReturn))
	// Clear the bit so that a packet re-entering the stack (e.g. over a
	// tunnel or a bridge) is not masqueraded twice.
	g.add(nftMasquerading, g.r().markSet(mark, true).done())
	g.add(nftMasquerading, g.r().masquerade().done())
	g.add(nftRejectChain, g.r().reject().done())
}

// nodePortDests start the rules under which node ports are looked up:
// local addresses but loopback (reaching it would need route_localnet),
// or the configured ranges.
func (g *nftgen) nodePortDests() []func() *rule {
	if len(g.cfg.NodePortAddresses) == 0 {
		return []func() *rule{func() *rule { return g.r().fibLocal(false).addr(false, g.loopback, true) }}
	}
	var out []func() *rule
	for _, p := range g.cfg.NodePortAddresses {
		if ruleset.IsFamily(p.Addr(), g.cfg.Family) {
			out = append(out, func() *rule { return g.r().addr(false, p, false) })
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
func addrKey(a netip.Addr, proto string, port int32) nftKey {
	return nftKey{Addr: a.Unmap(), Proto: proto, Port: port}
}
