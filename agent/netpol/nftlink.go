package netpol

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/agent/internal/nftlink"
)

// NFTBatch is one transaction on the enforcer's table.
type NFTBatch struct {
	Family v1.IPFamily
	Ops    []nftOp
	// Chains counts the chains created, rewritten or deleted; Elements
	// the set elements added or deleted.
	Chains, Elements int
}

// nftOp is one command: verb ("add", "flush", "delete") on a kind
// ("table", "chain", "set", "rule", "element").
type nftOp struct {
	verb, kind, name string
	rule             *NFTRule
	addrs            []netip.Addr
}

// NFTDiff is the transaction that turns the table from prev into cur.
// With prev nil (first sync, periodic full sync, after a failure) the
// table is deleted and written whole in the same transaction, which
// replaces whatever it held atomically; otherwise only the chains whose
// rules changed are rewritten and only changed set elements are written.
// Chains and sets exist before rules refer to them, and are deleted only
// once no rule does.
func NFTDiff(prev, cur *NFTTable) NFTBatch {
	b := &NFTBatch{Family: cur.Family}
	b.op(nftOp{verb: "add", kind: "table"})
	if prev == nil {
		b.op(nftOp{verb: "delete", kind: "table"})
		b.op(nftOp{verb: "add", kind: "table"})
		prev = newNFTTable(cur.Family)
	}
	for _, name := range sortedKeys(cur.Chains) {
		if _, ok := prev.Chains[name]; !ok {
			b.op(nftOp{verb: "add", kind: "chain", name: name})
		}
	}
	for _, name := range sortedKeys(cur.Sets) {
		old, known := prev.Sets[name]
		if !known {
			b.op(nftOp{verb: "add", kind: "set", name: name})
		}
		del, add := diffAddrs(old, cur.Sets[name])
		b.elements("delete", name, del)
		b.elements("add", name, add)
	}
	for _, name := range sortedKeys(cur.Chains) {
		old, known := prev.Chains[name]
		rules := cur.Chains[name]
		if known && slices.EqualFunc(old, rules, func(x, y NFTRule) bool { return x.Text(cur.Family) == y.Text(cur.Family) }) {
			continue
		}
		b.Chains++
		if known {
			b.op(nftOp{verb: "flush", kind: "chain", name: name})
		}
		for i := range rules {
			b.op(nftOp{verb: "add", kind: "rule", name: name, rule: &rules[i]})
		}
	}
	b.Chains += nftlink.Stale(prev.Chains, cur.Chains, prev.Sets, cur.Sets, func(verb, kind, name string) {
		b.op(nftOp{verb: verb, kind: kind, name: name})
	})
	return *b
}

func (b *NFTBatch) op(o nftOp) { b.Ops = append(b.Ops, o) }

// nftElementsPerOp bounds the elements of one command (they travel in one
// netlink attribute of at most 64 KiB).
const nftElementsPerOp = 1000

func (b *NFTBatch) elements(verb, set string, addrs []netip.Addr) {
	b.Elements += len(addrs)
	for len(addrs) > 0 {
		n := min(len(addrs), nftElementsPerOp)
		b.op(nftOp{verb: verb, kind: "element", name: set, addrs: addrs[:n]})
		addrs = addrs[n:]
	}
}

// diffAddrs are the addresses of old missing from now, and of now missing
// from old; both sorted.
func diffAddrs(old, now []netip.Addr) (del, add []netip.Addr) {
	for _, a := range old {
		if _, found := slices.BinarySearchFunc(now, a, netip.Addr.Compare); !found {
			del = append(del, a)
		}
	}
	for _, a := range now {
		if _, found := slices.BinarySearchFunc(old, a, netip.Addr.Compare); !found {
			add = append(add, a)
		}
	}
	return del, add
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// Text is the transaction in nft's syntax, for tests and error messages.
func (b NFTBatch) Text() string {
	var s strings.Builder
	for _, o := range b.Ops {
		s.WriteString(o.verb + " " + o.kind + " " + ipWord(b.Family) + " " + NFTTableName)
		if o.name != "" {
			s.WriteString(" " + o.name)
		}
		switch {
		case o.kind == "chain" && o.verb == "add" && isBase(o.name):
			fmt.Fprintf(&s, " { type filter hook %s priority %d ; policy accept ; }", o.name, nftPriority)
		case o.kind == "set" && o.verb == "add":
			s.WriteString(" { type " + addrType(b.Family) + " ; }")
		case o.kind == "rule":
			s.WriteString(" " + o.rule.Text(b.Family))
		case o.kind == "element":
			s.WriteString(" { " + addrList(o.addrs) + " }")
		}
		s.WriteByte('\n')
	}
	return s.String()
}

func isBase(chain string) bool { return chain == nftForward || chain == nftInput }

func addrType(f v1.IPFamily) string {
	if f == v1.IPv6Protocol {
		return "ipv6_addr"
	}
	return "ipv4_addr"
}

// nftLink writes the enforcer's table over netlink
// (github.com/google/nftables, as the proxy's nftables mode does): each
// batch is one transaction, applied atomically or not at all.
type nftLink struct {
	family v1.IPFamily
}

func (l nftLink) table() *nftables.Table { return nftlink.Table(l.family, NFTTableName) }

func (l nftLink) addrKey() nftables.SetDatatype {
	if l.family == v1.IPv6Protocol {
		return nftables.TypeIP6Addr
	}
	return nftables.TypeIPAddr
}

// Apply runs b as one transaction.
func (l nftLink) Apply(b NFTBatch) error {
	c, err := nftlink.Conn(len(b.Ops))
	if err != nil {
		return fmt.Errorf("nftables: netlink: %w", err)
	}
	t := l.table()
	for _, o := range b.Ops {
		if err := l.queue(c, t, o); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: transaction of %d commands on table %s %s: %w", len(b.Ops), ipWord(l.family), NFTTableName, err)
	}
	return nil
}

func (l nftLink) queue(c *nftables.Conn, t *nftables.Table, o nftOp) error {
	set := &nftables.Set{Name: o.name, Table: t, KeyType: l.addrKey()}
	switch o.kind + " " + o.verb {
	case "table add":
		c.AddTable(t)
	case "table delete":
		c.DelTable(t)
	case "chain add":
		ch := &nftables.Chain{Name: o.name, Table: t}
		if isBase(o.name) {
			ch.Type, ch.Priority = nftables.ChainTypeFilter, nftables.ChainPriorityRef(nftPriority)
			ch.Hooknum = nftables.ChainHookForward
			if o.name == nftInput {
				ch.Hooknum = nftables.ChainHookInput
			}
			accept := nftables.ChainPolicyAccept
			ch.Policy = &accept
		}
		c.AddChain(ch)
	case "chain flush":
		c.FlushChain(&nftables.Chain{Name: o.name, Table: t})
	case "chain delete":
		c.DelChain(&nftables.Chain{Name: o.name, Table: t})
	case "rule add":
		c.AddRule(&nftables.Rule{Table: t, Chain: &nftables.Chain{Name: o.name, Table: t}, Exprs: o.rule.exprs(l.family)})
	case "set add":
		return c.AddSet(set, nil)
	case "set delete":
		c.DelSet(set)
	case "element add", "element delete":
		elems := make([]nftables.SetElement, len(o.addrs))
		for i, a := range o.addrs {
			elems[i] = nftables.SetElement{Key: a.AsSlice()}
		}
		if o.verb == "add" {
			return c.SetAddElements(set, elems)
		}
		return c.SetDeleteElements(set, elems)
	default:
		return fmt.Errorf("nftables: unknown command %s %s", o.verb, o.kind)
	}
	return nil
}

// exprs are the rule's netlink expressions.
func (r NFTRule) exprs(f v1.IPFamily) []expr.Any {
	var es []expr.Any
	for _, m := range r.Matches {
		es = append(es, m.exprs(f)...)
	}
	switch r.Verdict.kind {
	case "jump":
		es = append(es, &expr.Verdict{Kind: expr.VerdictJump, Chain: r.Verdict.chain})
	case "return":
		es = append(es, &expr.Verdict{Kind: expr.VerdictReturn})
	case "reject":
		code := uint8(3) // ICMP port unreachable: a refused connect, as iptables' REJECT
		if f == v1.IPv6Protocol {
			code = 4 // ICMPv6 port unreachable
		}
		es = append(es, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: code})
	}
	return es
}

// addrPayload loads the source or destination address into register 1.
func addrPayload(f v1.IPFamily, src bool) *expr.Payload {
	off, n := uint32(16), uint32(4)
	if src {
		off = 12
	}
	if f == v1.IPv6Protocol {
		off, n = 24, 16
		if src {
			off = 8
		}
	}
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

func (m nftMatch) exprs(f v1.IPFamily) []expr.Any {
	switch m.kind {
	case matchEstablished:
		const established, related = 2, 4 // conntrack state bits
		return []expr.Any{&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(established | related), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)}}
	case matchAddr:
		a := m.prefix.Addr()
		es := []expr.Any{addrPayload(f, m.src)}
		if !m.prefix.IsSingleIP() {
			mask := nftlink.PrefixMask(m.prefix)
			es = append(es, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(mask)), Mask: mask, Xor: make([]byte, len(mask))})
		}
		op := expr.CmpOpEq
		if m.neg {
			op = expr.CmpOpNeq
		}
		return append(es, &expr.Cmp{Op: op, Register: 1, Data: a.AsSlice()})
	case matchSet:
		return []expr.Any{addrPayload(f, m.src), &expr.Lookup{SourceRegister: 1, SetName: m.set}}
	case matchProto:
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nftlink.ProtoNumber(m.proto)}}}
	case matchPorts:
		dport := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
		if m.lo == m.hi {
			return []expr.Any{dport, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(m.lo)}}
		}
		return []expr.Any{dport, &expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: binaryutil.BigEndian.PutUint16(m.lo)},
			&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: binaryutil.BigEndian.PutUint16(m.hi)}}
	case matchICMPv6Type:
		typ := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1}
		return []expr.Any{typ, &expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: []byte{byte(m.lo)}},
			&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: []byte{byte(m.hi)}}}
	}
	return nil
}

// deleteTable removes the enforcer's table if it exists; a kernel that
// does not speak nf_tables has none.
func (l nftLink) deleteTable() error {
	if ok, _ := nftlink.HasTable(l.table()); !ok {
		return nil // no table, or no nf_tables to list it
	}
	return nftlink.DeleteExisting(l.table())
}
