// Package ruleset holds a component's iptables rules by table and chain, as
// built for one sync, and writes the iptables-restore input that turns the
// chains a previous sync left into these ones.
//
// A component (the service proxy, the NetworkPolicy enforcer) owns every
// chain whose name starts with its prefix. Each sync builds the complete
// desired set of its chains; the Writer compares it with what it last wrote
// and emits only the chains that changed, new or gone, so that a change to
// one Service rewrites a handful of chains, not tens of thousands.
package ruleset

import (
	"bytes"
	"hash/maphash"
	"slices"
	"strings"
)

// Ruleset is the desired content of a component's chains. Chains keep the
// order they were declared in, so the output is deterministic.
type Ruleset struct {
	tables map[string]*table
	order  []string
}

type table struct {
	chains map[string]*Chain
	order  []string
}

// Chain is one chain's rules in iptables-restore syntax ("-A NAME ...").
type Chain struct {
	Name  string
	buf   bytes.Buffer
	rules int
}

// New returns an empty ruleset.
func New() *Ruleset { return &Ruleset{tables: map[string]*table{}} }

// Chain returns the named chain of a table, declaring it (empty) if this is
// its first mention. Declared chains are written even when empty: an empty
// chain still exists and may be jumped to.
func (r *Ruleset) Chain(tableName, chain string) *Chain {
	t := r.tables[tableName]
	if t == nil {
		t = &table{chains: map[string]*Chain{}}
		r.tables[tableName] = t
		r.order = append(r.order, tableName)
	}
	c := t.chains[chain]
	if c == nil {
		c = &Chain{Name: chain}
		t.chains[chain] = c
		t.order = append(t.order, chain)
	}
	return c
}

// Has reports whether a chain was declared.
func (r *Ruleset) Has(tableName, chain string) bool {
	t := r.tables[tableName]
	return t != nil && t.chains[chain] != nil
}

// Tables lists the tables in declaration order.
func (r *Ruleset) Tables() []string { return slices.Clone(r.order) }

// Chains lists a table's chains in declaration order.
func (r *Ruleset) Chains(tableName string) []*Chain {
	t := r.tables[tableName]
	if t == nil {
		return nil
	}
	out := make([]*Chain, 0, len(t.order))
	for _, name := range t.order {
		out = append(out, t.chains[name])
	}
	return out
}

// Rules counts every rule of every chain.
func (r *Ruleset) Rules() int {
	n := 0
	for _, t := range r.tables {
		for _, c := range t.chains {
			n += c.rules
		}
	}
	return n
}

// Add appends a rule: its match and target arguments, in iptables syntax.
// Arguments are joined by spaces; use Comment for text that has spaces.
func (c *Chain) Add(args ...string) {
	c.buf.WriteString("-A ")
	c.buf.WriteString(c.Name)
	for _, a := range args {
		c.buf.WriteByte(' ')
		c.buf.WriteString(a)
	}
	c.buf.WriteByte('\n')
	c.rules++
}

// Len is the number of rules in the chain.
func (c *Chain) Len() int { return c.rules }

// Lines returns the chain's rules, one "-A NAME ..." per element.
func (c *Chain) Lines() []string {
	s := strings.TrimSuffix(c.buf.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Comment returns the "-m comment --comment" arguments for text, quoted
// for iptables-restore. Kubernetes names cannot contain quotes, but text is
// cleaned anyway so that no input can break the restore syntax.
func Comment(text string) []string {
	text = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r == '\n' || r < ' ' {
			return -1
		}
		return r
	}, text)
	if len(text) > 250 { // the comment match allows 255 bytes
		text = text[:250]
	}
	return []string{"-m", "comment", "--comment", `"` + text + `"`}
}

// State is what a Writer last wrote: a fingerprint of every chain it owns,
// by table. A nil State means unknown (first sync or after a failure).
type State map[string]map[string]uint64

// Writer emits iptables-restore input for successive Rulesets, writing only
// the chains that differ from the previous successful write.
type Writer struct {
	// Owned reports whether a chain belongs to the component; only such
	// chains are ever deleted.
	Owned func(chain string) bool
	seed  maphash.Seed
	last  State
}

// NewWriter returns a Writer that knows nothing of the current state: its
// first payload is complete.
func NewWriter(owned func(chain string) bool) *Writer {
	return &Writer{Owned: owned, seed: maphash.MakeSeed()}
}

// Known reports whether the Writer knows what is installed, that is whether
// its next payload may be partial.
func (w *Writer) Known() bool { return w.last != nil }

// Forget makes the next payload complete; call it after a failed restore
// or when something else may have changed the chains.
func (w *Writer) Forget() { w.last = nil }

// Payload is one iptables-restore input and the state it leads to.
type Payload struct {
	Data []byte
	// Chains is how many chains the payload writes or deletes.
	Chains int
	next   State
}

// Payload returns the restore input (for --noflush) that turns the
// installed chains into rs. existing lists, per table, the chains found
// installed; it is consulted only when the Writer does not know the state,
// so that leftovers of an earlier process are deleted too.
func (w *Writer) Payload(rs *Ruleset, existing map[string][]string) Payload {
	next := State{}
	var out bytes.Buffer
	p := Payload{}
	tables := rs.Tables()
	for name := range existing {
		if !slices.Contains(tables, name) {
			tables = append(tables, name)
		}
	}
	for name := range w.last {
		if !slices.Contains(tables, name) {
			tables = append(tables, name)
		}
	}
	for _, tableName := range tables {
		prev := w.last[tableName]
		fps := map[string]uint64{}
		next[tableName] = fps
		var declare, rules, deletes bytes.Buffer
		var declared []string
		// Chains go out sorted by name: iptables-nft keeps its chain
		// cache sorted, and inserting in any other order makes a large
		// restore quadratic (2,000 services: 30-80 s unsorted, 3 s sorted).
		chains := rs.Chains(tableName)
		slices.SortFunc(chains, func(a, b *Chain) int { return strings.Compare(a.Name, b.Name) })
		for _, c := range chains {
			fp := maphash.Bytes(w.seed, c.buf.Bytes())
			fps[c.Name] = fp
			if old, ok := prev[c.Name]; ok && old == fp && w.last != nil {
				continue
			}
			declared = append(declared, c.Name)
			rules.Write(c.buf.Bytes())
			p.Chains++
		}
		var gone []string
		if w.last == nil {
			for _, name := range existing[tableName] {
				if w.Owned(name) && !rs.Has(tableName, name) {
					gone = append(gone, name)
				}
			}
		} else {
			for name := range prev {
				if !rs.Has(tableName, name) {
					gone = append(gone, name)
				}
			}
		}
		slices.Sort(gone)
		gone = slices.Compact(gone)
		for _, name := range gone {
			// Declaring flushes the chain, so that it can be deleted even
			// if it still has rules that jump to other chains.
			declared = append(declared, name)
			deletes.WriteString("-X " + name + "\n")
			p.Chains++
		}
		if len(declared) == 0 {
			continue
		}
		slices.Sort(declared)
		for _, name := range declared {
			declare.WriteString(":" + name + " - [0:0]\n")
		}
		out.WriteString("*" + tableName + "\n")
		out.Write(declare.Bytes())
		out.Write(rules.Bytes())
		out.Write(deletes.Bytes())
		out.WriteString("COMMIT\n")
	}
	p.Data = out.Bytes()
	p.next = next
	return p
}

// Done records that a payload was applied successfully.
func (w *Writer) Done(p Payload) { w.last = p.next }
