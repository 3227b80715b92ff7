package proxy

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/keelson/keelson/agent/internal/ruleset"
)

// This file follows packets through a generated ruleset, so that tests say
// what happens to traffic ("a pod reaching the cluster IP lands on one of
// the two endpoints, not masqueraded") instead of restating rule text. It
// understands exactly the rule vocabulary the proxy writes.

// pkt is a new connection's first packet.
type pkt struct {
	src, dst netip.Addr
	proto    string
	dport    int
	// srcLocal: sent by the node itself (addrtype --src-type LOCAL).
	srcLocal bool
}

// outcome is one way the nat table can treat a packet (random balancing
// makes several).
type outcome struct {
	dnat string // "ip:port", empty when untranslated
	masq bool
}

type tracer struct {
	t     *testing.T
	rs    *ruleset.Ruleset
	local []netip.Addr // the node's addresses
}

func (tr *tracer) chain(table, name string) [][]string {
	for _, c := range tr.rs.Chains(table) {
		if c.Name == name {
			var out [][]string
			for _, l := range c.Lines() {
				out = append(out, splitRule(l)[2:]) // drop "-A NAME"
			}
			return out
		}
	}
	tr.t.Fatalf("jump to undeclared chain %s/%s", table, name)
	return nil
}

// splitRule splits a restore line on spaces, keeping quoted text whole.
func splitRule(line string) []string {
	var out []string
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		if strings.HasPrefix(line, `"`) {
			end := strings.Index(line[1:], `"`) + 1
			out = append(out, line[1:end])
			line = line[end+1:]
			continue
		}
		i := strings.IndexByte(line, ' ')
		if i < 0 {
			out = append(out, line)
			break
		}
		out = append(out, line[:i])
		line = line[i+1:]
	}
	return out
}

// nat follows p from the service chain entry point, returning every
// outcome. Masquerade is what KEELSON-MARK-MASQ was reached for.
func (tr *tracer) nat(p pkt) []outcome {
	outs := tr.walk("nat", chainServices, p, outcome{}, 0)
	slices.SortFunc(outs, func(a, b outcome) int { return strings.Compare(a.dnat, b.dnat) })
	return slices.Compact(outs)
}

// filter returns the filter verdict for p as seen after nat (dst as
// translated): "", REJECT or DROP. chain is KEELSON-SERVICES (traffic from
// pods and the node) or KEELSON-EXTERNAL-SERVICES.
func (tr *tracer) filter(chain string, p pkt) string {
	outs := tr.walk("filter", chain, p, outcome{}, 0)
	for _, o := range outs {
		if o.dnat == "REJECT" || o.dnat == "DROP" {
			return o.dnat
		}
	}
	return ""
}

// walk evaluates a chain; an outcome's dnat is set by DNAT, or to the
// verdict of REJECT/DROP/ACCEPT in the filter table.
func (tr *tracer) walk(table, name string, p pkt, st outcome, depth int) []outcome {
	if depth > 10 {
		tr.t.Fatalf("rule loop at %s", name)
	}
	return tr.walkRules(table, tr.chain(table, name), p, st, depth)
}

func (tr *tracer) walkRules(table string, rules [][]string, p pkt, st outcome, depth int) []outcome {
	var outs []outcome
	for i, r := range rules {
		matched, random := tr.match(r, p)
		if !matched {
			continue
		}
		if random { // the packet may also not match and go on
			outs = append(outs, tr.walkRules(table, rules[i+1:], p, st, depth)...)
		}
		target, args := targetOf(r)
		switch target {
		case "RETURN":
			return append(outs, st)
		case "MARK":
			st.masq = true
			continue
		case "DNAT":
			st.dnat = args[2]
			return append(outs, st)
		case "REJECT", "DROP", "ACCEPT":
			st.dnat = target
			return append(outs, st)
		}
		var fellThrough []outcome
		for _, o := range tr.walk(table, target, p, st, depth+1) {
			if o.dnat == "" {
				fellThrough = append(fellThrough, o)
			} else {
				outs = append(outs, o)
			}
		}
		if len(fellThrough) == 0 {
			return outs
		}
		st = fellThrough[0]
	}
	return append(outs, st)
}

func targetOf(r []string) (string, []string) {
	for i, a := range r {
		if a == "-j" {
			return r[i+1], r[i+1:]
		}
	}
	return "", nil
}

// match reports whether rule r matches p; branch is true for a random
// (statistic) match, which may or may not match.
func (tr *tracer) match(r []string, p pkt) (matched, branch bool) {
	neg := false
	for i := 0; i < len(r); i++ {
		a := r[i]
		ok := true
		switch a {
		case "!":
			neg = true
			continue
		case "-j":
			return true, branch
		case "-s", "-d":
			pfx := netip.MustParsePrefix(r[i+1])
			addr := p.src
			if a == "-d" {
				addr = p.dst
			}
			ok = pfx.Contains(addr)
			i++
		case "-p":
			ok = r[i+1] == p.proto
			i++
		case "--dport":
			ok = r[i+1] == strconv.Itoa(p.dport)
			i++
		case "--dst-type":
			ok = slices.Contains(tr.local, p.dst)
			i++
		case "--src-type":
			ok = p.srcLocal
			i++
		case "--probability":
			branch = true
			i++
		case "--rcheck":
			ok = false // no client has history in these traces
		case "--ctstate":
			ok = strings.Contains(r[i+1], "NEW")
			i++
		case "--mark":
			ok = false // no packet carries the mark on entry
			i++
		case "--comment", "-m", "--mode", "--name", "--seconds":
			i++
		}
		if ok == neg {
			return false, false
		}
		neg = false
	}
	return true, branch
}

func dnats(outs []outcome) []string {
	var s []string
	for _, o := range outs {
		s = append(s, o.dnat)
	}
	return s
}
