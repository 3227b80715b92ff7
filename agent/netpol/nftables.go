package netpol

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// NFTTableName is the enforcer's nftables table, one per family ("ip
// keelson-netpol", "ip6 keelson-netpol"), used when the service proxy runs
// in its nftables mode. It is a table of its own rather than chains in the
// proxy's table "keelson": each table has one owner that rewrites it whole
// on a full sync and deletes it on cleanup, the two sync on their own
// schedules, and a policy verdict cannot be skipped from another table (an
// accept ends only its own table's base chain; a reject ends the packet).
// Its base chains hook forward and input at the filter priority (0),
// after the proxy's DNAT (-100): they see pod addresses, not service ones.
const NFTTableName = "keelson-netpol"

// Objects of the table. Every connection's first packet that leaves or
// enters a pod of this node passes the top chain, from the base chains: a
// pod isolated for egress sends it through its egress chain, a pod
// isolated for ingress through its ingress chain. Such a chain returns as
// soon as one of its rules allows the packet and rejects it otherwise;
// rules match peer pods through sets (one per policy rule, peer and, for
// named ports on egress, port), so that pods coming and going change set
// elements, not chains.
const (
	nftForward       = "forward"  // base chain, hook forward
	nftInput         = "input"    // base chain, hook input
	nftTop           = "netpol"   // established, exempt, jumps per pod address
	nftIngressPrefix = "ingress-" // per pod address
	nftEgressPrefix  = "egress-"  // per pod address
	nftSetPrefix     = "peers-"   // per policy rule, peer (and port)
	nftPriority      = 0          // filter
)

// NFTTable is the content of the enforcer's table for one family: a pure
// value, so that a sync is the difference of two of them.
type NFTTable struct {
	Family v1.IPFamily
	// Chains holds every chain's rules, the base chains' included.
	Chains map[string][]NFTRule
	// Sets are the peer sets' addresses, sorted.
	Sets map[string][]netip.Addr
}

// NFTRule is a rule as matches and a verdict; its text (nft's syntax) and
// its netlink expressions both derive from them.
type NFTRule struct {
	Matches []nftMatch
	Verdict nftVerdict
}

type nftMatchKind int

const (
	matchEstablished nftMatchKind = iota // ct state established,related
	matchAddr                            // address (not) in a prefix
	matchSet                             // address in a named set
	matchProto                           // transport protocol
	matchPorts                           // destination port range
	matchICMPv6Type                      // ICMPv6 type range
)

// nftMatch is one term of a rule; src picks the source address (else the
// destination).
type nftMatch struct {
	kind   nftMatchKind
	src    bool
	neg    bool
	prefix netip.Prefix
	set    string
	proto  string
	lo, hi uint16
}

// nftVerdict is "jump chain" (chain set), "return" or "reject".
type nftVerdict struct {
	kind  string
	chain string
}

var (
	verdictReturn = nftVerdict{kind: "return"}
	verdictReject = nftVerdict{kind: "reject"}
)

func jumpTo(chain string) nftVerdict { return nftVerdict{kind: "jump", chain: chain} }

// CompileNFT computes the enforcer's nftables table: the same plan as
// Compile, spelled for nftables.
func CompileNFT(in Input, cfg Config) (*NFTTable, []error) {
	pl, errs := plan(in, cfg)
	return emitNFT(pl, cfg.Family), errs
}

func newNFTTable(f v1.IPFamily) *NFTTable {
	return &NFTTable{Family: f, Chains: map[string][]NFTRule{}, Sets: map[string][]netip.Addr{}}
}

// emitNFT spells a plan out as the enforcer's table.
func emitNFT(pl *policyPlan, family v1.IPFamily) *NFTTable {
	t := newNFTTable(family)
	t.Chains[nftForward] = []NFTRule{{Verdict: jumpTo(nftTop)}}
	t.Chains[nftInput] = []NFTRule{{Verdict: jumpTo(nftTop)}}
	top := []NFTRule{{Matches: []nftMatch{{kind: matchEstablished}}, Verdict: verdictReturn}}
	if pl.neighborDiscovery {
		top = append(top, NFTRule{Matches: []nftMatch{{kind: matchProto, proto: "ipv6-icmp"}, {kind: matchICMPv6Type, lo: ndFirst, hi: ndLast}},
			Verdict: verdictReturn})
	}
	for _, a := range pl.exempt {
		top = append(top, NFTRule{Matches: []nftMatch{addrMatch(false, hostPrefix(a), false)}, Verdict: verdictReturn})
	}
	for _, pp := range pl.pods {
		src := pp.dir == egress // the pod's own address: source on egress
		name := nftPodChain(pp.dir, pp.ip)
		top = append(top, NFTRule{Matches: []nftMatch{addrMatch(src, hostPrefix(pp.ip), false)}, Verdict: jumpTo(name)})
		var rules []NFTRule
		for _, r := range pp.rules {
			for _, a := range r.allows {
				var ms []nftMatch
				switch {
				case a.block != nil:
					ms = append(ms, addrMatch(!src, a.block.cidr, false))
					for _, ex := range a.block.except {
						ms = append(ms, addrMatch(!src, ex, true))
					}
				case a.pods != nil:
					set := nftSetName(a.pods.key)
					if _, ok := t.Sets[set]; !ok {
						t.Sets[set] = sortedAddrs(a.pods.addrs)
					}
					ms = append(ms, nftMatch{kind: matchSet, src: !src, set: set})
				}
				rules = append(rules, NFTRule{Matches: append(ms, a.port.nft()...), Verdict: verdictReturn})
			}
		}
		t.Chains[name] = append(rules, NFTRule{Verdict: verdictReject})
	}
	t.Chains[nftTop] = top
	return t
}

func nftPodChain(dir direction, ip netip.Addr) string {
	if dir == egress {
		return nftEgressPrefix + ip.String()
	}
	return nftIngressPrefix + ip.String()
}

// nftSetName names the set of a peer key: short, and the same for the
// same key on every sync.
func nftSetName(key string) string {
	h := sha256.Sum256([]byte(key))
	return nftSetPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:10]))
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()) }

func addrMatch(src bool, p netip.Prefix, neg bool) nftMatch {
	return nftMatch{kind: matchAddr, src: src, prefix: p.Masked(), neg: neg}
}

func sortedAddrs(addrs []netip.Addr) []netip.Addr {
	out := slices.Clone(addrs)
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out)
}

// nft is the port match's terms.
func (pm portMatch) nft() []nftMatch {
	if pm.proto == "" {
		return nil
	}
	out := []nftMatch{{kind: matchProto, proto: pm.proto}}
	if pm.lo != 0 {
		out = append(out, nftMatch{kind: matchPorts, lo: uint16(pm.lo), hi: uint16(pm.hi)})
	}
	return out
}

// Rules counts the rules and set elements of the table.
func (t *NFTTable) Rules() int {
	n := 0
	for _, rs := range t.Chains {
		n += len(rs)
	}
	for _, s := range t.Sets {
		n += len(s)
	}
	return n
}

// Text is the table in nft's syntax, for tests and logs.
func (t *NFTTable) Text() string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(t.Sets)) {
		fmt.Fprintf(&b, "set %s { %s }\n", name, addrList(t.Sets[name]))
	}
	for _, name := range slices.Sorted(maps.Keys(t.Chains)) {
		fmt.Fprintf(&b, "chain %s {\n", name)
		for _, r := range t.Chains[name] {
			fmt.Fprintf(&b, "\t%s\n", r.Text(t.Family))
		}
		b.WriteString("}\n")
	}
	return b.String()
}

func addrList(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func ipWord(f v1.IPFamily) string {
	if f == v1.IPv6Protocol {
		return "ip6"
	}
	return "ip"
}

// Text is the rule in nft's syntax; two rules are equal when their texts
// are.
func (r NFTRule) Text(f v1.IPFamily) string {
	var parts []string
	for _, m := range r.Matches {
		parts = append(parts, m.text(f))
	}
	v := r.Verdict.kind
	if r.Verdict.kind == "jump" {
		v += " " + r.Verdict.chain
	}
	return strings.Join(append(parts, v), " ")
}

func (m nftMatch) text(f v1.IPFamily) string {
	dir := "daddr"
	if m.src {
		dir = "saddr"
	}
	switch m.kind {
	case matchEstablished:
		return "ct state established,related"
	case matchAddr:
		op := " "
		if m.neg {
			op = " != "
		}
		a := m.prefix.String()
		if m.prefix.IsSingleIP() {
			a = m.prefix.Addr().String()
		}
		return ipWord(f) + " " + dir + op + a
	case matchSet:
		return ipWord(f) + " " + dir + " @" + m.set
	case matchProto:
		return "meta l4proto " + m.proto
	case matchPorts:
		if m.lo == m.hi {
			return "th dport " + strconv.Itoa(int(m.lo))
		}
		return fmt.Sprintf("th dport %d-%d", m.lo, m.hi)
	case matchICMPv6Type:
		return fmt.Sprintf("icmpv6 type %d-%d", m.lo, m.hi)
	}
	return fmt.Sprintf("match(%d)", m.kind)
}
