package proxy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/keelson/keelson/agent/internal/ruleset"
	"github.com/keelson/keelson/agent/internal/ruleset/iptrace"
)

// pkt is a new connection's first packet.
type pkt struct {
	src, dst netip.Addr
	proto    string
	dport    int
	srcLocal bool // sent by the node itself
}

// outcome is one way the nat table treats a packet: where it is DNATed
// ("" when untouched) and whether it is marked for masquerade.
type outcome struct {
	dnat string
	masq bool
}

type tracer struct {
	t     *testing.T
	rs    *ruleset.Ruleset
	local []netip.Addr
}

func (tr *tracer) iptrace() *iptrace.Tracer {
	return &iptrace.Tracer{T: tr.t, Rules: tr.rs, Local: tr.local}
}

func (p pkt) packet() iptrace.Packet {
	return iptrace.Packet{Src: p.src, Dst: p.dst, Proto: p.proto, DPort: p.dport, SrcLocal: p.srcLocal}
}

// nat follows p from the services chain: every outcome of random balancing.
func (tr *tracer) nat(p pkt) []outcome {
	var outs []outcome
	for _, o := range tr.iptrace().Trace("nat", chainServices, p.packet()) {
		outs = append(outs, outcome{dnat: strings.TrimPrefix(o.Verdict, "DNAT "), masq: o.Mark&0x4000 != 0})
	}
	slices.SortFunc(outs, func(a, b outcome) int { return strings.Compare(a.dnat, b.dnat) })
	return slices.Compact(outs)
}

// filter returns the verdict of a filter chain for p (as nat left it):
// "", REJECT or DROP.
func (tr *tracer) filter(chain string, p pkt) string {
	for _, o := range tr.iptrace().Trace("filter", chain, p.packet()) {
		if o.Verdict == "REJECT" || o.Verdict == "DROP" {
			return o.Verdict
		}
	}
	return ""
}

func dnats(outs []outcome) []string {
	var s []string
	for _, o := range outs {
		s = append(s, o.dnat)
	}
	return s
}
