package proxy

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
)

// nftDataplane is the nftables mode: one table per family, written over
// netlink. A full sync computes the whole table and rewrites it in one
// transaction; any other sync regenerates only the service ports whose
// snapshot changed, and its transaction holds only their chains, elements
// and sets: its cost follows the change, not the table.
type nftDataplane struct {
	link  nftLink
	rules RulesConfig
	fixed *NFTTable
	// installed is what the last successful sync installed; nil when the
	// table is unknown.
	installed *nftInstalled
	// claims counts, per verdict-map and hairpin element, the installed
	// ports that write it.
	claims nftClaims
}

// nftInstalled is the table as the last successful sync left it, by
// service port.
type nftInstalled struct {
	ports map[string]*nftPortState // by port id
	bySvc map[string][]string      // port ids by service, namespace/name
	count int                      // rules and elements, the fixed part's too
	// blocks are the endpoints map's blocks of the ports. A plan places
	// them as it regenerates ports: a plan not committed leaves them
	// ahead of the table, so the dataplane follows one with a full sync.
	blocks *nftBlocks
}

func newNFTInstalled() *nftInstalled {
	return &nftInstalled{ports: map[string]*nftPortState{}, bySvc: map[string][]string{}, blocks: newNFTBlocks()}
}

// nftPortState is one service port as installed: its snapshot entry and
// the part of the table it made.
type nftPortState struct {
	port ServicePort
	part *NFTTable
}

func newNFTDataplane(f v1.IPFamily, rc RulesConfig) (*nftDataplane, error) {
	if err := NFTSupported(); err != nil {
		return nil, err
	}
	return &nftDataplane{link: nftLink{family: f}, rules: rc, fixed: NFTFixed(rc)}, nil
}

func (d *nftDataplane) sync(ctx context.Context, v *portView, full bool) (dataplaneStats, error) {
	if full || d.installed == nil {
		return d.syncFull(ctx, v)
	}
	p, err := planNFTChanges(d.installed, d.claims, v, d.rules)
	if err != nil || p.shared {
		return d.syncFull(ctx, v)
	}
	if len(p.batch.Ops) > 1 { // more than "add table"
		if err := d.link.Apply(ctx, p.batch, d.fixed.MapTypes); err != nil {
			d.installed = nil
			return dataplaneStats{}, err
		}
	}
	p.commit(d.installed, d.claims)
	return dataplaneStats{rules: p.count, chains: p.batch.Chains}, nil
}

// nftChanges is what a sync by difference writes and what it leaves.
type nftChanges struct {
	batch NFTBatch
	// updates are the ports regenerated (nil: removed), bySvc the port
	// ids of each changed service.
	updates map[string]*nftPortState
	bySvc   map[string][]string
	count   int
	// removed and added are the parts the change takes out and puts in.
	removed, added []*NFTTable
	// shared is set when a map element the change writes or deletes is
	// claimed by two ports (the same external IP and port, say): which one
	// the map holds is then decided for the whole table, by a full sync.
	shared bool
}

// planNFTChanges regenerates the ports of the view's changed services
// whose snapshot entry differs from what installed holds (all services
// when the view does not say) and computes the transaction over their
// parts alone: its cost follows the change, not the table.
func planNFTChanges(installed *nftInstalled, claims nftClaims, v *portView, rc RulesConfig) (nftChanges, error) {
	prev, cur := newNFTTable(rc.Family), newNFTTable(rc.Family)
	c := nftChanges{updates: map[string]*nftPortState{}, bySvc: map[string][]string{}, count: installed.count}
	keys := v.changed
	if keys == nil {
		keys = slices.Sorted(maps.Keys(v.bySvc))
		for key := range installed.bySvc {
			if _, ok := v.bySvc[key]; !ok {
				keys = append(keys, key)
			}
		}
	}
	var errs []error
	regenerate := func(id string, sp *ServicePort) {
		old := installed.ports[id]
		if sp != nil && old != nil && old.port.equal(sp) {
			return
		}
		if sp != nil {
			part, err := NFTPort(sp, rc, installed.blocks)
			errs = append(errs, err)
			st := &nftPortState{port: *sp, part: part}
			c.updates[id] = st
			cur.merge(st.part)
			c.added = append(c.added, st.part)
			c.count += st.part.Rules()
		} else {
			c.updates[id] = nil
			for _, pick := range []string{"svc", "svl"} {
				installed.blocks.release(id + "|" + pick)
			}
		}
		if old != nil {
			prev.merge(old.part)
			c.removed = append(c.removed, old.part)
			c.count -= old.part.Rules()
		}
	}
	for _, key := range keys {
		ids := []string{}
		for i := range v.bySvc[key] {
			sp := &v.bySvc[key][i]
			ids = append(ids, sp.id())
			regenerate(sp.id(), sp)
		}
		for _, id := range installed.bySvc[key] {
			if !slices.Contains(ids, id) {
				regenerate(id, nil)
			}
		}
		c.bySvc[key] = ids
	}
	c.shared = claims.shared(c.removed, c.added)
	prev.Hairpin, cur.Hairpin = claims.hairpin(c.removed, c.added)
	c.batch = NFTDiff(prev, cur, NFTObjects{})
	return c, errors.Join(errs...)
}

// commit moves installed and claims to the state after the change.
func (c nftChanges) commit(installed *nftInstalled, claims nftClaims) {
	for id, st := range c.updates {
		if st == nil {
			delete(installed.ports, id)
		} else {
			installed.ports[id] = st
		}
	}
	for key, ids := range c.bySvc {
		if len(ids) == 0 {
			delete(installed.bySvc, key)
		} else {
			installed.bySvc[key] = ids
		}
	}
	installed.count = c.count
	for _, t := range c.removed {
		claims.add(t, -1)
	}
	for _, t := range c.added {
		claims.add(t, 1)
	}
}

// nftClaims counts, per verdict-map element and hairpin endpoint, the
// ports that write it.
type nftClaims map[nftClaim]int

type nftClaim struct {
	m string
	k nftKey
}

func (cl nftClaims) add(t *NFTTable, n int) {
	t.eachElement(func(c nftClaim) {
		if cl[c] += n; cl[c] == 0 {
			delete(cl, c)
		}
	})
}

func (t *NFTTable) eachElement(f func(nftClaim)) {
	for m, elems := range t.Maps {
		for k := range elems {
			f(nftClaim{m, k})
		}
	}
	for a := range t.Hairpin {
		f(nftClaim{nftHairpin, nftKey{Addr: a}})
	}
}

// hairpin is the part of the hairpin set that a change touches, before
// and after it: an endpoint is in the set while a port claims it (ports
// of one pod share it), so the set changes only where a count goes from
// or to zero.
func (cl nftClaims) hairpin(removed, added []*NFTTable) (before, after map[netip.Addr]struct{}) {
	delta := map[netip.Addr]int{}
	for _, t := range removed {
		for a := range t.Hairpin {
			delta[a]--
		}
	}
	for _, t := range added {
		for a := range t.Hairpin {
			delta[a]++
		}
	}
	before, after = map[netip.Addr]struct{}{}, map[netip.Addr]struct{}{}
	for a, d := range delta {
		n := cl[nftClaim{nftHairpin, nftKey{Addr: a}}]
		if n > 0 {
			before[a] = struct{}{}
		}
		if n+d > 0 {
			after[a] = struct{}{}
		}
	}
	return before, after
}

// shared reports whether an element of removed or added has another
// claimer, before the change or after it.
func (cl nftClaims) shared(removed, added []*NFTTable) bool {
	delta := nftClaims{} // may go negative: not a count of claimers
	for _, t := range removed {
		delta.add(t, -1)
	}
	for _, t := range added {
		delta.add(t, 1)
	}
	shared := false
	check := func(c nftClaim) { shared = shared || c.m != nftHairpin && (cl[c] > 1 || cl[c]+delta[c] > 1) }
	for _, list := range [][]*NFTTable{removed, added} {
		for _, t := range list {
			t.eachElement(check)
		}
	}
	return shared
}

// syncFull lists what the table holds and replaces it with the whole
// table of the view's ports.
func (d *nftDataplane) syncFull(ctx context.Context, v *portView) (dataplaneStats, error) {
	d.installed = nil
	existing, err := d.link.Objects()
	if err != nil {
		return dataplaneStats{}, err
	}
	whole := newNFTTable(d.rules.Family)
	whole.merge(d.fixed)
	next := newNFTInstalled()
	claims := nftClaims{}
	ports := v.all()
	for i := range ports {
		sp := &ports[i]
		part, err := NFTPort(sp, d.rules, next.blocks)
		if err != nil {
			return dataplaneStats{}, err
		}
		st := &nftPortState{port: *sp, part: part}
		next.ports[sp.id()] = st
		next.bySvc[sp.svcKey()] = append(next.bySvc[sp.svcKey()], sp.id())
		whole.merge(st.part)
		claims.add(st.part, 1)
	}
	batch := NFTDiff(nil, whole, existing)
	if err := d.link.Apply(ctx, batch, d.fixed.MapTypes); err != nil {
		return dataplaneStats{}, err
	}
	next.count = whole.Rules()
	d.installed, d.claims = next, claims
	return dataplaneStats{rules: next.count, chains: batch.Chains}, nil
}

func (d *nftDataplane) known() bool { return d.installed != nil }

func (d *nftDataplane) present(context.Context) (bool, error) {
	return d.link.HasTable()
}

// equal reports whether two snapshot entries program the same rules.
func (sp *ServicePort) equal(o *ServicePort) bool {
	return sp.Namespace == o.Namespace && sp.Name == o.Name && sp.PortName == o.PortName && sp.Protocol == o.Protocol &&
		sp.Port == o.Port && sp.ClusterIP == o.ClusterIP && sp.NodePort == o.NodePort &&
		sp.AffinitySeconds == o.AffinitySeconds && sp.ExternalLocal == o.ExternalLocal && sp.InternalLocal == o.InternalLocal &&
		slices.Equal(sp.ExternalIPs, o.ExternalIPs) && slices.Equal(sp.LoadBalancerIPs, o.LoadBalancerIPs) &&
		slices.Equal(sp.Endpoints, o.Endpoints)
}
