package proxy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/agent/internal/nftlink"
)

// NFTRule is one rule of the proxy's table in two forms built together:
// Text in nft's syntax (what tests, logs and `nft list` read; two rules
// are equal when their texts are) and Exprs, the expressions the kernel
// receives over netlink.
type NFTRule struct {
	Text  string
	Exprs []expr.Any
}

func (r NFTRule) String() string { return r.Text }

// rule builds an NFTRule term by term; each term appends its text and its
// expressions, so the two forms cannot drift apart.
type rule struct {
	family v1.IPFamily
	text   []string
	exprs  []expr.Any
}

func newRule(f v1.IPFamily) *rule { return &rule{family: f} }

func (r *rule) add(text string, e ...expr.Any) *rule {
	r.text = append(r.text, text)
	r.exprs = append(r.exprs, e...)
	return r
}

func (r *rule) done() NFTRule {
	return NFTRule{Text: strings.Join(r.text, " "), Exprs: r.exprs}
}

func (r *rule) ip() string {
	if r.family == v1.IPv6Protocol {
		return "ip6"
	}
	return "ip"
}

// addrPayload loads the source or destination address into reg.
func (r *rule) addrPayload(src bool, reg uint32) expr.Any {
	off, n := uint32(16), uint32(4)
	if src {
		off = 12
	}
	if r.family == v1.IPv6Protocol {
		off, n = 24, 16
		if src {
			off = 8
		}
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

func dirWord(src bool) string {
	if src {
		return "saddr"
	}
	return "daddr"
}

// addr matches the source or destination address against a or, for a
// shorter prefix, against its range; neg inverts the match.
func (r *rule) addr(src bool, p netip.Prefix, neg bool) *rule {
	op, sym := expr.CmpOpEq, " "
	if neg {
		op, sym = expr.CmpOpNeq, " != "
	}
	p = p.Masked()
	a := p.Addr().Unmap()
	text := r.ip() + " " + dirWord(src) + sym + a.String()
	es := []expr.Any{r.addrPayload(src, 1)}
	if p.Bits() < a.BitLen() {
		text = r.ip() + " " + dirWord(src) + sym + p.String()
		mask := netip.PrefixFrom(a, p.Bits())
		es = append(es, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(a.BitLen() / 8),
			Mask: nftlink.PrefixMask(mask), Xor: make([]byte, a.BitLen()/8)})
	}
	es = append(es, &expr.Cmp{Op: op, Register: 1, Data: a.AsSlice()})
	return r.add(text, es...)
}

func (r *rule) addrIs(src bool, a netip.Addr) *rule {
	return r.addr(src, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), false)
}

// l4proto matches the transport protocol.
func (r *rule) l4proto(proto string) *rule {
	return r.add("meta l4proto "+proto,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nftlink.ProtoNumber(proto)}})
}

// dport matches the transport protocol and destination port.
func (r *rule) dport(proto string, port int32) *rule {
	r.l4proto(proto)
	r.text[len(r.text)-1] = proto + " dport " + strconv.Itoa(int(port))
	r.exprs = append(r.exprs, thDport(1), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(port))})
	return r
}

func thDport(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

// ctState matches connections in any of the named states.
func (r *rule) ctState(name string) *rule {
	bits := map[string]uint32{"invalid": 1, "established": 2, "related": 4, "new": 8}[name]
	return r.add("ct state "+name,
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
}

// fibLocal matches packets whose source or destination is a local address.
func (r *rule) fibLocal(src bool) *rule {
	return r.add("fib "+dirWord(src)+" type local",
		&expr.Fib{Register: 1, FlagSADDR: src, FlagDADDR: !src, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)})
}

// vmapAddrProtoPort looks "daddr . l4proto . dport" up in verdict map m.
// Concatenated keys take 32-bit registers in turn (reg 1 is the first
// four of them).
func (r *rule) vmapAddrProtoPort(m string) *rule {
	protoReg := r.nextReg()
	return r.add(r.ip()+" daddr . meta l4proto . th dport vmap @"+m,
		r.addrPayload(false, 1), &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: protoReg}, thDport(protoReg+1),
		&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: m})
}

// vmapProtoPort looks "l4proto . dport" up in verdict map m.
func (r *rule) vmapProtoPort(m string) *rule {
	return r.add("meta l4proto . th dport vmap @"+m,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, thDport(9),
		&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: m})
}

// inSet matches the source address against set.
func (r *rule) saddrInSet(set string) *rule {
	return r.add(r.ip()+" saddr @"+set, r.addrPayload(true, 1), &expr.Lookup{SourceRegister: 1, SetName: set})
}

// updateSet adds or refreshes the source address in a timeout set.
func (r *rule) updateSet(set string) *rule {
	return r.add("update @"+set+" { "+r.ip()+" saddr }", r.addrPayload(true, 1),
		&expr.Dynset{SrcRegKey: 1, SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE})
}

// random matches with probability 1/mod.
func (r *rule) random(mod int) *rule {
	return r.add(fmt.Sprintf("numgen random mod %d == 0", mod),
		&expr.Numgen{Register: 1, Modulus: uint32(mod), Type: unix.NFT_NG_RANDOM},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)})
}

// markTest matches packets without the mark bit.
func (r *rule) markUnset(mark uint32) *rule {
	return r.add(fmt.Sprintf("meta mark & %#x == 0", mark),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(mark), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)})
}

// markSet sets (or with xor, toggles) the mark bit.
func (r *rule) markSet(mark uint32, xor bool) *rule {
	op, mask := "|", ^mark
	if xor {
		op, mask = "^", 0xffffffff
	}
	return r.add(fmt.Sprintf("meta mark set meta mark %s %#x", op, mark),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: binaryutil.NativeEndian.PutUint32(mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
}

// markForMasquerade ends the rule by setting the masquerade bit in place
// (not by a jump to a chain that sets it: the kernel validates every
// chain a jump reaches at each transaction, once per path, so a shared
// chain jumped to from every service made each change cost more).
func (r *rule) markForMasquerade(mark uint32) NFTRule {
	return r.markSet(mark, false).done()
}

func (r *rule) masquerade() *rule {
	return r.add("masquerade fully-random", &expr.Masq{FullyRandom: true})
}

// reject answers with ICMP port unreachable (a refused TCP connect).
func (r *rule) reject() *rule {
	code := uint8(3) // ICMP port unreachable
	if r.family == v1.IPv6Protocol {
		code = 4 // ICMPv6 port unreachable
	}
	return r.add("reject", &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: code})
}

// dnat translates the destination to ep.
func (r *rule) dnat(ep netip.AddrPort) *rule {
	return r.add("dnat to "+ep.String(),
		&expr.Immediate{Register: 1, Data: ep.Addr().Unmap().AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(ep.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: r.natFamily(), RegAddrMin: 1, RegProtoMin: 2, Specified: true})
}

// nextReg is the 32-bit register after a field of the family's address
// in register 1 (NFT_REG_1 is NFT_REG32_00, 8): concatenations pad each
// field to 32 bits and take the registers in turn.
func (r *rule) nextReg() uint32 {
	if r.family == v1.IPv6Protocol {
		return 12
	}
	return 9
}

func (r *rule) natFamily() uint32 {
	if r.family == v1.IPv6Protocol {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

// dnatMap translates the destination to the address . port that map m
// holds at a random index of [offset, offset+mod): the lookup writes the
// element's data, address then port, to the registers from 1.
func (r *rule) dnatMap(mod int, offset uint32, m string) *rule {
	return r.add(fmt.Sprintf("dnat %s addr . port to numgen random mod %d offset %d map @%s", r.ip(), mod, offset, m),
		&expr.Numgen{Register: 1, Modulus: uint32(mod), Offset: offset, Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: m},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: r.natFamily(), RegAddrMin: 1, RegProtoMin: r.nextReg(), Specified: true})
}

// ctStatusDstNAT is IPS_DST_NAT, conntrack's "destination translated".
const ctStatusDstNAT = 1 << 5

// ctStatusDNAT matches connections whose destination was translated.
func (r *rule) ctStatusDNAT() *rule {
	return r.add("ct status dnat",
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(ctStatusDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
}

// hairpinLookup matches "saddr . daddr" against set.
func (r *rule) hairpinLookup(set string) *rule {
	return r.add(r.ip()+" saddr . "+r.ip()+" daddr @"+set,
		r.addrPayload(true, 1), r.addrPayload(false, r.nextReg()), &expr.Lookup{SourceRegister: 1, SetName: set})
}

// verdict ends the rule: "jump X", "goto X", "return", "drop".
func (r *rule) verdict(v nftVerdict) NFTRule {
	r.add(v.String(), v.expr())
	return r.done()
}

// nftVerdict is a rule's or a map element's verdict.
type nftVerdict struct {
	Kind  expr.VerdictKind
	Chain string
}

func jumpTo(c string) nftVerdict { return nftVerdict{Kind: expr.VerdictJump, Chain: c} }
func gotoTo(c string) nftVerdict { return nftVerdict{Kind: expr.VerdictGoto, Chain: c} }

var (
	verdictDrop   = nftVerdict{Kind: expr.VerdictDrop}
	verdictReturn = nftVerdict{Kind: expr.VerdictReturn}
)

func (v nftVerdict) expr() *expr.Verdict { return &expr.Verdict{Kind: v.Kind, Chain: v.Chain} }

func (v nftVerdict) String() string {
	switch v.Kind {
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictDrop:
		return "drop"
	}
	return fmt.Sprintf("verdict(%d)", v.Kind)
}
