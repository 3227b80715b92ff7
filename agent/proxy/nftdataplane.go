package proxy

import (
	"context"
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
	// ports holds, per service port, what the last successful sync
	// installed for it; nil when the table is unknown.
	ports map[string]*nftPortState
	// count is the number of rules and elements installed.
	count int
	// claims counts, per map element, the installed ports that write it.
	claims nftClaims
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

func (d *nftDataplane) sync(ctx context.Context, ports []ServicePort, full bool) (dataplaneStats, error) {
	if full || d.ports == nil {
		return d.syncFull(ctx, ports)
	}
	p := planNFTChanges(d.ports, d.claims, d.count, ports, d.rules)
	if p.shared {
		return d.syncFull(ctx, ports)
	}
	if len(p.batch.Ops) > 1 { // more than "add table"
		if err := d.link.Apply(ctx, p.batch, d.fixed.MapTypes); err != nil {
			d.ports = nil
			return dataplaneStats{}, err
		}
	}
	d.ports, d.count = p.ports, p.count
	p.commit(d.claims)
	return dataplaneStats{rules: p.count, chains: p.batch.Chains}, nil
}

// nftChanges is what a sync by difference writes and what it leaves.
type nftChanges struct {
	batch NFTBatch
	ports map[string]*nftPortState
	count int
	// removed and added are the parts the change takes out and puts in.
	removed, added []*NFTTable
	// shared is set when a map element the change writes or deletes is
	// claimed by two ports (the same external IP and port, say): which one
	// the map holds is then decided for the whole table, by a full sync.
	shared bool
}

// planNFTChanges regenerates only the ports whose snapshot entry differs
// from what installed holds (count rules and elements; claims its map
// elements) and computes the transaction over their parts alone.
func planNFTChanges(installed map[string]*nftPortState, claims nftClaims, count int, ports []ServicePort, rc RulesConfig) nftChanges {
	prev, cur := newNFTTable(rc.Family), newNFTTable(rc.Family)
	c := nftChanges{ports: make(map[string]*nftPortState, len(ports))}
	for i := range ports {
		sp := &ports[i]
		id := sp.id()
		old := installed[id]
		if old != nil && old.port.equal(sp) {
			c.ports[id] = old
			continue
		}
		st := &nftPortState{port: *sp, part: NFTPort(sp, rc)}
		c.ports[id] = st
		cur.merge(st.part)
		c.added = append(c.added, st.part)
		count += st.part.Rules()
		if old != nil {
			prev.merge(old.part)
			c.removed = append(c.removed, old.part)
			count -= old.part.Rules()
		}
	}
	for id, old := range installed {
		if _, ok := c.ports[id]; !ok {
			prev.merge(old.part)
			c.removed = append(c.removed, old.part)
			count -= old.part.Rules()
		}
	}
	c.count = count
	c.shared = claims.shared(c.removed, c.added)
	c.batch = NFTDiff(prev, cur, NFTObjects{})
	return c
}

// commit moves claims to the state after the change.
func (c nftChanges) commit(claims nftClaims) {
	for _, t := range c.removed {
		claims.add(t, -1)
	}
	for _, t := range c.added {
		claims.add(t, 1)
	}
}

// nftClaims counts, per verdict-map element, the ports that write it.
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
	check := func(c nftClaim) { shared = shared || cl[c] > 1 || cl[c]+delta[c] > 1 }
	for _, list := range [][]*NFTTable{removed, added} {
		for _, t := range list {
			t.eachElement(check)
		}
	}
	return shared
}

// syncFull lists what the table holds and replaces it with the whole
// table of ports.
func (d *nftDataplane) syncFull(ctx context.Context, ports []ServicePort) (dataplaneStats, error) {
	d.ports = nil
	existing, err := d.link.Objects()
	if err != nil {
		return dataplaneStats{}, err
	}
	whole := newNFTTable(d.rules.Family)
	whole.merge(d.fixed)
	next := make(map[string]*nftPortState, len(ports))
	claims := nftClaims{}
	for i := range ports {
		st := &nftPortState{port: ports[i], part: NFTPort(&ports[i], d.rules)}
		next[ports[i].id()] = st
		whole.merge(st.part)
		claims.add(st.part, 1)
	}
	batch := NFTDiff(nil, whole, existing)
	if err := d.link.Apply(ctx, batch, d.fixed.MapTypes); err != nil {
		return dataplaneStats{}, err
	}
	d.ports, d.count, d.claims = next, whole.Rules(), claims
	return dataplaneStats{rules: d.count, chains: batch.Chains}, nil
}

func (d *nftDataplane) known() bool { return d.ports != nil }

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
