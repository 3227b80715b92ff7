package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/agent/internal/nftlink"
)

// nftLink talks to the kernel's nf_tables over netlink
// (github.com/google/nftables) rather than through the nft binary: nft
// loads its cache of the table's chains from the kernel before every
// transaction, which costs as much as the table is large; here a
// transaction costs what it changes. Each transaction is one netlink
// batch, applied atomically or not at all.
type nftLink struct {
	family v1.IPFamily
}

func (l nftLink) table() *nftables.Table { return nftlink.Table(l.family, NFTTableName) }

// Apply runs b as one transaction; maps gives the key type of every map
// whose elements b changes.
func (l nftLink) Apply(_ context.Context, b NFTBatch, maps map[string]nftMapKind) error {
	c, err := nftlink.Conn(len(b.Ops))
	if err != nil {
		return fmt.Errorf("nftables: netlink: %w", err)
	}
	t := l.table()
	for _, o := range b.Ops {
		if err := l.queue(c, t, o, maps); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: transaction of %d commands: %w", len(b.Ops), err)
	}
	return nil
}

// queue adds one command to the connection's batch.
func (l nftLink) queue(c *nftables.Conn, t *nftables.Table, o nftOp, maps map[string]nftMapKind) error {
	switch o.kind + " " + o.verb {
	case "table add":
		c.AddTable(t)
	case "chain add":
		c.AddChain(l.chain(t, o))
	case "chain flush":
		c.FlushChain(&nftables.Chain{Name: o.name, Table: t})
	case "chain delete":
		c.DelChain(&nftables.Chain{Name: o.name, Table: t})
	case "rule add":
		c.AddRule(&nftables.Rule{Table: t, Chain: &nftables.Chain{Name: o.name, Table: t}, Exprs: o.rule.Exprs})
	case "map add", "set add":
		return c.AddSet(l.set(t, o, maps), nil)
	case "map flush", "set flush":
		kind, _ := mapKindOf(maps, o.name)
		c.FlushSet(l.mapOf(t, o.name, kind))
	case "set delete":
		c.DelSet(&nftables.Set{Name: o.name, Table: t})
	case "element add", "element delete":
		return l.elements(c, t, o, maps)
	default:
		return fmt.Errorf("nftables: unknown command %s %s", o.verb, o.kind)
	}
	return nil
}

func (l nftLink) chain(t *nftables.Table, o nftOp) *nftables.Chain {
	ch := &nftables.Chain{Name: o.name, Table: t}
	if o.base == nil {
		return ch
	}
	hooks := map[string]*nftables.ChainHook{"prerouting": nftables.ChainHookPrerouting, "input": nftables.ChainHookInput,
		"forward": nftables.ChainHookForward, "output": nftables.ChainHookOutput, "postrouting": nftables.ChainHookPostrouting}
	ch.Hooknum, ch.Priority = hooks[o.base.Hook], nftables.ChainPriorityRef(nftables.ChainPriority(o.base.Priority))
	ch.Type = nftables.ChainType(o.base.Type)
	accept := nftables.ChainPolicyAccept
	ch.Policy = &accept
	return ch
}

func (l nftLink) addrType() nftables.SetDatatype {
	if l.family == v1.IPv6Protocol {
		return nftables.TypeIP6Addr
	}
	return nftables.TypeIPAddr
}

// mapOf is a map or fixed set of the table. The endpoints map's keys are
// numgen's numbers (host byte order: nft then lists them right); its
// values concatenate an address and a port, each padded to 32 bits.
func (l nftLink) mapOf(t *nftables.Table, name string, kind nftMapKind) *nftables.Set {
	switch kind {
	case mapEndpoints:
		return &nftables.Set{Name: name, Table: t, IsMap: true, KeyType: nftables.TypeInteger, KeyByteOrder: binaryutil.NativeEndian,
			DataType: nftables.MustConcatSetType(l.addrType(), nftables.TypeInetService)}
	case setHairpin:
		return &nftables.Set{Name: name, Table: t, Concatenation: true, KeyType: nftables.MustConcatSetType(l.addrType(), l.addrType())}
	}
	key := nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	if kind == mapAddrProtoPort {
		key = nftables.MustConcatSetType(l.addrType(), nftables.TypeInetProto, nftables.TypeInetService)
	}
	return &nftables.Set{Name: name, Table: t, IsMap: true, Concatenation: true, KeyType: key, DataType: nftables.TypeVerdict}
}

func (l nftLink) set(t *nftables.Table, o nftOp, maps map[string]nftMapKind) *nftables.Set {
	if kind, ok := mapKindOf(maps, o.name); ok {
		return l.mapOf(t, o.name, kind)
	}
	return &nftables.Set{Name: o.name, Table: t, KeyType: l.addrType(), HasTimeout: true, Dynamic: true,
		Timeout: time.Duration(o.timeout) * time.Second}
}

func (l nftLink) elements(c *nftables.Conn, t *nftables.Table, o nftOp, maps map[string]nftMapKind) error {
	kind, ok := mapKindOf(maps, o.name)
	if !ok {
		return fmt.Errorf("nftables: elements of unknown map %s", o.name)
	}
	m := l.mapOf(t, o.name, kind)
	elems := make([]nftables.SetElement, len(o.elems))
	for i, e := range o.elems {
		elems[i] = nftables.SetElement{Key: e.keyBytes}
		if o.verb == "add" && e.verdict != nil {
			elems[i].VerdictData = e.verdict.expr()
		} else if o.verb == "add" {
			elems[i].Val = e.valueBytes
		}
	}
	if o.verb == "add" {
		return c.SetAddElements(m, elems)
	}
	return c.SetDeleteElements(m, elems)
}

// mapKindOf is the type of map or fixed set name: the endpoints maps come
// and go with the services, the others are in maps.
func mapKindOf(maps map[string]nftMapKind, name string) (nftMapKind, bool) {
	if strings.HasPrefix(name, nftEndpointsPrefix) {
		return mapEndpoints, true
	}
	kind, ok := maps[name]
	return kind, ok
}

// HasTable reports whether the proxy's table exists.
func (l nftLink) HasTable() (bool, error) { return nftlink.HasTable(l.table()) }

// Objects lists the chains and sets of the proxy's table (none when it
// does not exist).
func (l nftLink) Objects() (NFTObjects, error) {
	var objs NFTObjects
	if ok, err := l.HasTable(); err != nil || !ok {
		return objs, err
	}
	c, err := nftables.New()
	if err != nil {
		return objs, err
	}
	chains, err := c.ListChainsOfTableFamily(l.table().Family)
	if err != nil {
		return objs, fmt.Errorf("nftables: listing chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == NFTTableName {
			objs.Chains = append(objs.Chains, ch.Name)
		}
	}
	sets, err := c.GetSets(l.table())
	if err != nil {
		return objs, fmt.Errorf("nftables: listing sets: %w", err)
	}
	for _, s := range sets {
		if !s.Anonymous {
			objs.Sets = append(objs.Sets, s.Name)
		}
	}
	return objs, nil
}

// DeleteTable removes the proxy's table if it exists.
func (l nftLink) DeleteTable() error { return nftlink.DeleteTable(l.table()) }

// NFTSupported reports whether the kernel speaks nf_tables: the
// nftables mode needs nothing else (no nft binary).
func NFTSupported() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4); err != nil {
		return fmt.Errorf("the kernel does not answer nf_tables requests: %w", err)
	}
	return nil
}

// CleanupNFT deletes the proxy's nftables tables of families (all when
// empty); a kernel without nf_tables has none.
func CleanupNFT(_ context.Context, families []v1.IPFamily) error {
	if NFTSupported() != nil {
		return nil
	}
	if len(families) == 0 {
		families = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
	}
	var errs []error
	for _, f := range families {
		if err := (nftLink{family: f}).DeleteTable(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}
