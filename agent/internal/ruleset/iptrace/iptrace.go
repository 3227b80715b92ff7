// Package iptrace follows a packet through a ruleset.Ruleset, so that tests
// of generated rules say what happens to traffic ("a pod reaching the
// cluster IP lands on one of two endpoints", "this policy drops that
// connection") instead of restating rule text. It understands exactly the
// rule vocabulary Keelson's components write, and fails the test on
// anything else.
package iptrace

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/keelson/keelson/agent/internal/ruleset"
)

// Packet is the first packet of a new connection.
type Packet struct {
	Src, Dst netip.Addr
	Proto    string // tcp, udp, sctp
	DPort    int
	// SrcLocal: sent by the node itself (addrtype --src-type LOCAL).
	SrcLocal bool
	// State is the conntrack state (default NEW).
	State string
}

// Outcome is one way a table can treat a packet: random balancing makes
// several.
type Outcome struct {
	// Verdict is "DNAT ip:port", "ACCEPT", "REJECT", "DROP", or "" when
	// the packet went through the chain untouched.
	Verdict string
	// Mark is the packet mark afterwards.
	Mark uint32
}

// Tracer evaluates chains of one ruleset.
type Tracer struct {
	T     testing.TB
	Rules *ruleset.Ruleset
	// Local are the node's addresses (addrtype --dst-type LOCAL).
	Local []netip.Addr
}

// Trace follows p from chain of table and returns every outcome, sorted
// and without duplicates.
func (tr *Tracer) Trace(table, chain string, p Packet) []Outcome {
	if p.State == "" {
		p.State = "NEW"
	}
	outs := tr.walk(table, chain, p, Outcome{}, 0)
	slices.SortFunc(outs, func(a, b Outcome) int {
		if c := strings.Compare(a.Verdict, b.Verdict); c != 0 {
			return c
		}
		return int(a.Mark) - int(b.Mark)
	})
	return slices.Compact(outs)
}

// Verdicts lists the outcomes' verdicts.
func Verdicts(outs []Outcome) []string {
	var s []string
	for _, o := range outs {
		s = append(s, o.Verdict)
	}
	return s
}

func (tr *Tracer) rules(table, name string) [][]string {
	for _, c := range tr.Rules.Chains(table) {
		if c.Name == name {
			var out [][]string
			for _, l := range c.Lines() {
				out = append(out, Split(l)[2:]) // drop "-A NAME"
			}
			return out
		}
	}
	tr.T.Fatalf("jump to undeclared chain %s/%s", table, name)
	return nil
}

// Split splits a restore line on spaces, keeping quoted text whole.
func Split(line string) []string {
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

func (tr *Tracer) walk(table, name string, p Packet, st Outcome, depth int) []Outcome {
	if depth > 10 {
		tr.T.Fatalf("rule loop at %s", name)
	}
	return tr.walkRules(table, tr.rules(table, name), p, st, depth)
}

// walkRules evaluates rules in order; a packet that falls off the end (or
// RETURNs) comes back with an empty verdict.
func (tr *Tracer) walkRules(table string, rules [][]string, p Packet, st Outcome, depth int) []Outcome {
	var outs []Outcome
	for i, r := range rules {
		matched, random := tr.match(r, p, st)
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
			st.Mark = tr.mark(st.Mark, args)
			continue
		case "DNAT":
			st.Verdict = "DNAT " + args[2]
			return append(outs, st)
		case "REJECT", "DROP", "ACCEPT":
			st.Verdict = target
			return append(outs, st)
		case "MASQUERADE":
			st.Verdict = target
			return append(outs, st)
		}
		var fellThrough []Outcome
		for _, o := range tr.walk(table, target, p, st, depth+1) {
			if o.Verdict == "" {
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

func (tr *Tracer) mark(cur uint32, args []string) uint32 {
	op, val := args[1], args[2]
	switch op {
	case "--or-mark":
		return cur | tr.num(val)
	case "--xor-mark":
		return cur ^ tr.num(val)
	case "--set-xmark":
		v, m := tr.valMask(val)
		return (cur &^ m) ^ v
	}
	tr.T.Fatalf("unknown MARK operation %q", op)
	return 0
}

func (tr *Tracer) num(s string) uint32 {
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		tr.T.Fatalf("bad number %q: %v", s, err)
	}
	return uint32(v)
}

func (tr *Tracer) valMask(s string) (uint32, uint32) {
	v, m, ok := strings.Cut(s, "/")
	if !ok {
		return tr.num(v), 0xffffffff
	}
	return tr.num(v), tr.num(m)
}

func targetOf(r []string) (string, []string) {
	for i, a := range r {
		if a == "-j" {
			return r[i+1], r[i+1:]
		}
	}
	return "", nil
}

// match reports whether rule r matches p; random is true for a statistic
// match, which may or may not match.
func (tr *Tracer) match(r []string, p Packet, st Outcome) (matched, random bool) {
	neg := false
	for i := 0; i < len(r); i++ {
		a := r[i]
		ok := true
		switch a {
		case "!":
			neg = true
			continue
		case "-j":
			return true, random
		case "-s", "-d":
			pfx, err := netip.ParsePrefix(r[i+1])
			if err != nil {
				tr.T.Fatalf("bad prefix in %v: %v", r, err)
			}
			addr := p.Src
			if a == "-d" {
				addr = p.Dst
			}
			ok = pfx.Contains(addr)
			i++
		case "-p":
			ok = r[i+1] == p.Proto
			i++
		case "--dport":
			lo, hi, found := strings.Cut(r[i+1], ":")
			if !found {
				hi = lo
			}
			ok = int(tr.num(lo)) <= p.DPort && p.DPort <= int(tr.num(hi))
			i++
		case "--dst-type":
			ok = slices.Contains(tr.Local, p.Dst)
			i++
		case "--src-type":
			ok = p.SrcLocal
			i++
		case "--probability":
			random = true
			i++
		case "--rcheck":
			ok = false // no client has history in these traces
		case "--ctstate":
			ok = slices.Contains(strings.Split(r[i+1], ","), p.State)
			i++
		case "--mark":
			v, m := tr.valMask(r[i+1])
			ok = st.Mark&m == v
			i++
		case "--comment", "-m", "--mode", "--name", "--seconds":
			i++
		case "--set", "--rsource", "--reap":
		default:
			tr.T.Fatalf("iptrace does not understand %q in %v", a, r)
		}
		if ok == neg {
			return false, false
		}
		neg = false
	}
	return true, random
}

// String renders outcomes for failure messages.
func (o Outcome) String() string { return fmt.Sprintf("%s mark=%#x", o.Verdict, o.Mark) }
