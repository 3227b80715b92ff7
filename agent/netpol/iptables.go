package netpol

import (
	"fmt"
	"strconv"

	"github.com/keelson/keelson/agent/internal/ruleset"
)

// emitIPTables spells a plan out as chains of the filter table (see the
// chain constants): the top chain jumps to a chain per pod address and
// direction, which clears the allow bit, jumps to a chain per policy rule
// (setting the bit on a match; an ipBlock has a chain of its own, whose
// exceptions return first) and rejects unless the bit is set.
func emitIPTables(pl *policyPlan, cfg Config) *ruleset.Ruleset {
	rs := ruleset.New()
	markSet := fmt.Sprintf("%#x/%#x", cfg.AllowMark, cfg.AllowMark)
	set := []string{"-j", "MARK", "--set-xmark", markSet}
	top := rs.Chain("filter", chainNetpol)
	top.Add("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN")
	if pl.neighborDiscovery {
		for typ := ndFirst; typ <= ndLast; typ++ {
			top.Add("-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", strconv.Itoa(typ), "-j", "RETURN")
		}
	}
	for _, a := range pl.exempt {
		top.Add(ruleset.Args([]string{"-d", ruleset.HostCIDR(a)}, ruleset.Comment("served by the node"), []string{"-j", "RETURN"})...)
	}
	for _, pp := range pl.pods {
		p, dir := pp.pod, pp.dir
		name := ruleset.ChainName(dir.prefix, pp.ip.String())
		top.Add(ruleset.Args([]string{dir.podMatch, ruleset.HostCIDR(pp.ip)},
			ruleset.Comment(p.namespace+"/"+p.name+" "+dir.name), []string{"-j", name})...)
		ch := rs.Chain("filter", name)
		ch.Add("-j", "MARK", "--set-xmark", fmt.Sprintf("0x0/%#x", cfg.AllowMark))
		for _, r := range pp.rules {
			pol := r.policy
			rule := ruleset.ChainName(prefixRule, fmt.Sprintf("%s/%s/%s/%s/%d", pp.ip, pol.Namespace, pol.Name, dir.name, r.index))
			rc := rs.Chain("filter", rule)
			blocks := map[*ipBlock]string{}
			for _, a := range r.allows {
				pm := a.port.iptables()
				switch {
				case a.block != nil:
					block, ok := blocks[a.block]
					if !ok {
						block = ruleset.ChainName(prefixBlock, rule+"/"+a.block.key)
						blocks[a.block] = block
						bc := rs.Chain("filter", block)
						for _, ex := range a.block.except {
							bc.Add(dir.peerMatch, ex.String(), "-j", "RETURN")
						}
						bc.Add(ruleset.Args([]string{dir.peerMatch, a.block.cidr.String()}, set)...)
					}
					rc.Add(ruleset.Args(pm, []string{"-j", block})...)
				case a.pods != nil:
					for _, ip := range a.pods.addrs {
						rc.Add(ruleset.Args([]string{dir.peerMatch, ruleset.HostCIDR(ip)}, pm, set)...)
					}
				default:
					rc.Add(ruleset.Args(pm, set)...)
				}
			}
			ch.Add(ruleset.Args(ruleset.Comment(fmt.Sprintf("policy %s/%s %s rule %d", pol.Namespace, pol.Name, dir.name, r.index)), []string{"-j", rule})...)
			ch.Add("-m", "mark", "--mark", markSet, "-j", "RETURN")
		}
		ch.Add(ruleset.Args(ruleset.Comment(p.namespace+"/"+p.name+" "+dir.name+" not allowed by any policy"), []string{"-j", "REJECT"})...)
	}
	return rs
}

// ICMPv6 neighbor discovery: router solicitation (133) to neighbor
// advertisement (136).
const ndFirst, ndLast = 133, 136

// iptables is the port match's arguments.
func (pm portMatch) iptables() []string {
	switch {
	case pm.proto == "":
		return nil
	case pm.lo == 0:
		return []string{"-p", pm.proto}
	case pm.lo == pm.hi:
		return []string{"-p", pm.proto, "-m", pm.proto, "--dport", strconv.Itoa(int(pm.lo))}
	}
	return []string{"-p", pm.proto, "-m", pm.proto, "--dport", fmt.Sprintf("%d:%d", pm.lo, pm.hi)}
}
