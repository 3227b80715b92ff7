package proxy

import (
	"bytes"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables/binaryutil"
	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/agent/internal/nftlink"
)

// NFTObjects are the chains and sets (maps included) a table holds, as
// listed from the kernel before a full sync.
type NFTObjects struct {
	Chains, Sets []string
}

// NFTBatch is one transaction and what it touches.
type NFTBatch struct {
	Family v1.IPFamily
	Ops    []nftOp
	// Chains counts the chains created, rewritten or deleted.
	Chains int
	// Elements counts the map elements added or deleted.
	Elements int
}

// nftOp is one command of a transaction: verb ("add", "flush",
// "delete") on an object kind ("table", "chain", "map", "set", "rule",
// "element") named name.
type nftOp struct {
	verb, kind, name string
	base             *nftBase   // add chain: a base chain's hook
	mapKind          nftMapKind // add map, or the hairpin set
	timeout          int32      // add set: affinity timeout in seconds
	rule             NFTRule    // add rule
	elems            []nftElem  // add or delete element
}

// nftElem is a map or set element in both forms: nft's text and the
// kernel's bytes. A verdict map's element has a verdict, the endpoints
// map's a value, a set's neither.
type nftElem struct {
	key, value string
	keyBytes   []byte
	valueBytes []byte
	verdict    *nftVerdict
	mapName    string // an endpoints map's element: its map
}

func verdictElem(k nftKey, v nftVerdict) nftElem {
	return nftElem{key: k.String(), keyBytes: k.bytes(), value: v.String(), verdict: &v}
}

// endpointElem is an endpoints map's element at index i: the key as
// numgen writes it (host byte order), the value address . port, each
// field padded to 32 bits.
func endpointElem(i uint32, e nftEndpoint) nftElem {
	a := e.Addr
	return nftElem{key: strconv.FormatUint(uint64(i), 10), keyBytes: binaryutil.NativeEndian.PutUint32(i),
		value:      a.Addr().Unmap().String() + " . " + strconv.Itoa(int(a.Port())),
		valueBytes: append(a.Addr().Unmap().AsSlice(), byte(a.Port()>>8), byte(a.Port()), 0, 0), mapName: e.Map}
}

// hairpinElem is the hairpin set's element "a . a".
func hairpinElem(a netip.Addr) nftElem {
	return nftElem{key: a.String() + " . " + a.String(), keyBytes: append(a.AsSlice(), a.AsSlice()...)}
}

// nftElementBytes bounds the elements of one element command: they
// travel in one netlink attribute, whose length field has 16 bits.
const nftElementBytes = 48 << 10

// elementSize is an element's share of that attribute, generously: the
// key, the value or the verdict and its chain name, and the attributes'
// headers.
func elementSize(e nftElem) int { return 96 + len(e.keyBytes) + len(e.value) }

// nftFamily is the nft family keyword of f.
func nftFamily(f v1.IPFamily) string {
	if f == v1.IPv6Protocol {
		return "ip6"
	}
	return "ip"
}

// NFTDiff computes the transaction that turns the table from prev into
// cur. With prev nil (first sync, periodic full sync, or after a failure)
// every chain and map of cur is rewritten and whatever existing lists that
// cur does not hold is deleted; otherwise only the chains whose rules
// changed are flushed and rewritten and only changed map elements are
// deleted and added (prev and cur may then be the parts of the table that
// some services make). Affinity sets are never flushed: they hold the
// clients' state. Order matters within a transaction: chains exist before
// anything jumps to them, and a chain is deleted only after the rules and
// elements that referred to it.
func NFTDiff(prev, cur *NFTTable, existing NFTObjects) NFTBatch {
	b := &NFTBatch{Family: cur.Family}
	b.op(nftOp{verb: "add", kind: "table"})
	if prev == nil {
		prev = b.listed(cur, existing)
	}
	for _, name := range sortedKeys(cur.Chains) {
		if _, ok := prev.Chains[name]; !ok {
			op := nftOp{verb: "add", kind: "chain", name: name}
			if base, ok := cur.Base[name]; ok {
				op.base = &base
			}
			b.op(op)
		}
	}
	for _, name := range sortedKeys(cur.MapTypes) {
		if _, ok := prev.MapTypes[name]; !ok {
			b.op(nftOp{verb: "add", kind: mapKindWord(cur.MapTypes[name]), name: name, mapKind: cur.MapTypes[name]})
		}
	}
	for _, name := range sortedKeys(cur.Sets) {
		if _, ok := prev.Sets[name]; !ok {
			b.op(nftOp{verb: "add", kind: "set", name: name, timeout: cur.Sets[name]})
		}
	}
	b.rules(prev, cur)
	b.elements(prev, cur)
	b.stale(prev, cur)
	return *b
}

// listed stands for what a full sync finds: existing chains and stale
// sets to rewrite or delete, maps flushed and filled again.
func (b *NFTBatch) listed(cur *NFTTable, existing NFTObjects) *NFTTable {
	prev := newNFTTable(cur.Family)
	for _, c := range existing.Chains {
		prev.Chains[c] = []NFTRule{{Text: "(listed)"}} // forces a flush and rewrite, or a deletion
	}
	for _, s := range existing.Sets {
		if kind, isMap := cur.MapTypes[s]; isMap {
			prev.MapTypes[s] = kind
			b.op(nftOp{verb: "flush", kind: mapKindWord(kind), name: s, mapKind: kind}) // filled in full below
		} else {
			prev.Sets[s] = -1 // kept when cur holds it, deleted otherwise
		}
	}
	return prev
}

func (b *NFTBatch) rules(prev, cur *NFTTable) {
	for _, name := range sortedKeys(cur.Chains) {
		old, known := prev.Chains[name]
		rules := cur.Chains[name]
		if known && slices.EqualFunc(old, rules, func(a, b NFTRule) bool { return a.Text == b.Text }) {
			continue
		}
		b.Chains++
		if known {
			b.op(nftOp{verb: "flush", kind: "chain", name: name})
		}
		for _, r := range rules {
			b.op(nftOp{verb: "add", kind: "rule", name: name, rule: r})
		}
	}
}

// elements deletes the elements that went away or changed value, then
// adds the new and changed ones, in every map either table has, the
// endpoints map and the hairpin set.
func (b *NFTBatch) elements(prev, cur *NFTTable) {
	names := slices.Sorted(maps.Keys(cur.Maps))
	for m := range prev.Maps {
		if _, ok := cur.Maps[m]; !ok {
			names = append(names, m)
		}
	}
	for _, m := range names {
		del, add := diffElems(prev.Maps[m], cur.Maps[m], verdictElem)
		b.elementOps("delete", m, del)
		b.elementOps("add", m, add)
	}
	del, add := diffElems(prev.Endpoints, cur.Endpoints, endpointElem)
	for _, m := range endpointMaps(del) {
		b.elementOps("delete", m.name, m.elems)
	}
	for _, m := range endpointMaps(add) {
		b.elementOps("add", m.name, m.elems)
	}
	del, add = diffElems(prev.Hairpin, cur.Hairpin, func(a netip.Addr, _ struct{}) nftElem { return hairpinElem(a) })
	b.elementOps("delete", nftHairpin, del)
	b.elementOps("add", nftHairpin, add)
}

// endpointMaps groups endpoints-map elements by map, in order.
func endpointMaps(elems []nftElem) []struct {
	name  string
	elems []nftElem
} {
	by := map[string][]nftElem{}
	for _, e := range elems {
		by[e.mapName] = append(by[e.mapName], e)
	}
	out := make([]struct {
		name  string
		elems []nftElem
	}, 0, len(by))
	for _, name := range slices.SortedFunc(maps.Keys(by), func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	}) {
		out = append(out, struct {
			name  string
			elems []nftElem
		}{name, by[name]})
	}
	return out
}

// diffElems are the elements of old that are gone from now or hold
// another value there, and those of now that are new or changed.
func diffElems[K, V comparable](old, now map[K]V, elem func(K, V) nftElem) (del, add []nftElem) {
	for k, v := range old {
		if nv, ok := now[k]; !ok || nv != v {
			del = append(del, elem(k, v))
		}
	}
	for k, v := range now {
		if ov, ok := old[k]; !ok || ov != v {
			add = append(add, elem(k, v))
		}
	}
	return del, add
}

func (b *NFTBatch) elementOps(verb, m string, elems []nftElem) {
	slices.SortFunc(elems, func(x, y nftElem) int {
		if len(x.key) != len(y.key) && strings.HasPrefix(m, nftEndpointsPrefix) { // numbers in order
			return len(x.key) - len(y.key)
		}
		return strings.Compare(x.key, y.key)
	})
	b.Elements += len(elems)
	for len(elems) > 0 {
		n, size := 0, 0
		for n < len(elems) && size+elementSize(elems[n]) <= nftElementBytes {
			size += elementSize(elems[n])
			n++
		}
		b.op(nftOp{verb: verb, kind: "element", name: m, elems: elems[:n]})
		elems = elems[n:]
	}
}

// stale deletes the chains and sets cur no longer has.
func (b *NFTBatch) stale(prev, cur *NFTTable) {
	b.Chains += nftlink.Stale(prev.Chains, cur.Chains, prev.Sets, cur.Sets, func(verb, kind, name string) {
		b.op(nftOp{verb: verb, kind: kind, name: name})
	})
}

func (b *NFTBatch) op(o nftOp) { b.Ops = append(b.Ops, o) }

// Text is the transaction in nft's syntax (what `nft -f` would take), for
// tests and error messages.
func (b NFTBatch) Text() string {
	var buf bytes.Buffer
	prefix := nftFamily(b.Family) + " " + NFTTableName
	for _, o := range b.Ops {
		buf.WriteString(o.verb + " " + o.kind + " " + prefix)
		if o.name != "" {
			buf.WriteString(" " + o.name)
		}
		if args := o.args(b.Family); args != "" {
			buf.WriteString(" " + args)
		}
		buf.WriteByte('\n')
	}
	return buf.String()
}

func (o nftOp) args(f v1.IPFamily) string {
	switch {
	case o.kind == "chain" && o.base != nil:
		return o.base.String()
	case o.verb == "add" && o.kind == "map" && o.mapKind == mapEndpoints:
		return "{ type integer : " + addrType(f) + " . inet_service ; }"
	case o.verb == "add" && o.kind == "map":
		return "{ type " + mapTypeText(f, o.mapKind) + " : verdict ; }"
	case o.verb == "add" && o.kind == "set" && o.mapKind == setHairpin:
		return "{ type " + addrType(f) + " . " + addrType(f) + " ; }"
	case o.verb == "add" && o.kind == "set":
		return "{ type " + addrType(f) + " ; flags dynamic,timeout ; timeout " + strconv.Itoa(int(o.timeout)) + "s ; }"
	case o.kind == "rule":
		return o.rule.Text
	case o.kind == "element":
		parts := make([]string, len(o.elems))
		for i, e := range o.elems {
			parts[i] = e.key
			if o.verb == "add" && e.value != "" {
				parts[i] += " : " + e.value
			}
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	}
	return ""
}

func addrType(f v1.IPFamily) string {
	if f == v1.IPv6Protocol {
		return "ipv6_addr"
	}
	return "ipv4_addr"
}

// mapKindWord is "set" for the hairpin set, "map" for the maps.
func mapKindWord(k nftMapKind) string {
	if k == setHairpin {
		return "set"
	}
	return "map"
}

func mapTypeText(f v1.IPFamily, k nftMapKind) string {
	if k == mapProtoPort {
		return "inet_proto . inet_service"
	}
	return addrType(f) + " . inet_proto . inet_service"
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
