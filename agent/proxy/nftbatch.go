package proxy

import (
	"bytes"
	"maps"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// NFTObjects are the chains and sets (maps included) a table holds, as
// listed from the kernel before a full sync.
type NFTObjects struct {
	Chains, Sets []string
}

// NFTBatch is one `nft -f` transaction and what it touches.
type NFTBatch struct {
	Data []byte
	// Chains counts the chains created, rewritten or deleted.
	Chains int
	// Elements counts the map elements added or deleted.
	Elements int
}

// nftElementsPerCommand bounds one "add element" line: nft parses a line
// at a time, and a few thousand elements per line is fastest.
const nftElementsPerCommand = 2000

// nftFamily is the nft family keyword of f.
func nftFamily(f v1.IPFamily) string {
	if f == v1.IPv6Protocol {
		return "ip6"
	}
	return "ip"
}

// NFTDiff writes the transaction that turns the table from prev into cur.
// With prev nil (first sync, periodic full sync, or after a failure) every
// chain and map of cur is rewritten and whatever existing lists that cur
// does not hold is deleted; otherwise only the chains whose rules changed
// are flushed and rewritten and only changed map elements are deleted and
// added. Affinity sets are never flushed: they hold the clients' state.
// Order matters within a transaction: chains exist before anything jumps
// to them, and a chain is deleted only after the rules and elements that
// referred to it.
func NFTDiff(prev, cur *NFTTable, existing NFTObjects) NFTBatch {
	b := &nftWriter{prefix: nftFamily(cur.Family) + " " + NFTTableName}
	b.line("add table " + b.prefix)
	if prev == nil {
		prev = &NFTTable{Chains: map[string][]string{}, Maps: map[string]map[string]string{}, Sets: map[string]string{}}
		for _, c := range existing.Chains {
			prev.Chains[c] = []string{"(listed)"} // forces a flush and rewrite, or a deletion
		}
		for _, s := range existing.Sets {
			if _, isMap := cur.MapTypes[s]; isMap {
				b.cmd("flush map", s) // rewritten in full below
			} else if _, keep := cur.Sets[s]; keep {
				prev.Sets[s] = cur.Sets[s]
			} else {
				prev.Sets[s] = "(stale)"
			}
		}
	}
	for _, name := range sortedKeys(cur.Chains) {
		if _, ok := prev.Chains[name]; !ok {
			b.cmd("add chain", name, cur.Base[name])
		}
	}
	for _, name := range sortedKeys(cur.MapTypes) {
		if _, ok := prev.Maps[name]; !ok && prev.MapTypes[name] == "" {
			b.cmd("add map", name, "{ type "+cur.MapTypes[name]+" ; }")
		}
	}
	for _, name := range sortedKeys(cur.Sets) {
		if _, ok := prev.Sets[name]; !ok {
			b.cmd("add set", name, cur.Sets[name])
		}
	}
	for _, name := range sortedKeys(cur.Chains) {
		old, known := prev.Chains[name]
		rules := cur.Chains[name]
		if known && slices.Equal(old, rules) {
			continue
		}
		b.chains++
		if known {
			b.cmd("flush chain", name)
		}
		for _, r := range rules {
			b.cmd("add rule", name, r)
		}
	}
	b.elements(prev, cur)
	// A stale chain may jump to another stale chain, which cannot be
	// deleted while referred to: empty them all first.
	var stale []string
	for _, name := range sortedKeys(prev.Chains) {
		if _, ok := cur.Chains[name]; !ok {
			stale = append(stale, name)
			b.cmd("flush chain", name)
		}
	}
	for _, name := range stale {
		b.chains++
		b.cmd("delete chain", name)
	}
	for _, name := range sortedKeys(prev.Sets) {
		if _, ok := cur.Sets[name]; !ok {
			b.cmd("delete set", name)
		}
	}
	return NFTBatch{Data: b.buf.Bytes(), Chains: b.chains, Elements: b.elems}
}

// elements deletes the elements that went away or changed verdict, then
// adds the new and changed ones.
func (b *nftWriter) elements(prev, cur *NFTTable) {
	for _, m := range sortedKeys(cur.Maps) {
		old, now := prev.Maps[m], cur.Maps[m]
		var del, add []string
		for _, k := range sortedKeys(old) {
			if v, ok := now[k]; !ok || v != old[k] {
				del = append(del, k)
			}
		}
		for _, k := range sortedKeys(now) {
			if v, ok := old[k]; !ok || v != now[k] {
				add = append(add, k+" : "+now[k])
			}
		}
		b.elementCmds("delete element", m, del)
		b.elementCmds("add element", m, add)
	}
}

func (b *nftWriter) elementCmds(verb, m string, elems []string) {
	b.elems += len(elems)
	for len(elems) > 0 {
		n := min(len(elems), nftElementsPerCommand)
		b.cmd(verb, m, "{ "+strings.Join(elems[:n], ", ")+" }")
		elems = elems[n:]
	}
}

type nftWriter struct {
	buf           bytes.Buffer
	prefix        string
	chains, elems int
}

func (b *nftWriter) line(s string) {
	b.buf.WriteString(s)
	b.buf.WriteByte('\n')
}

// cmd writes "verb <family> keelson obj args".
func (b *nftWriter) cmd(verb, obj string, args ...string) {
	b.buf.WriteString(verb)
	b.buf.WriteByte(' ')
	b.buf.WriteString(b.prefix)
	b.buf.WriteByte(' ')
	b.buf.WriteString(obj)
	for _, a := range args {
		if a != "" {
			b.buf.WriteByte(' ')
			b.buf.WriteString(a)
		}
	}
	b.buf.WriteByte('\n')
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
