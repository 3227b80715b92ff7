package placement

import (
	"fmt"
	"maps"
	"math"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

type topologyPair struct{ key, value string }

// pairCounts counts pods per topology domain.
type pairCounts map[topologyPair]int64

// add counts delta pods in n's domain for key, if n has the key; entries
// that drop to zero are deleted, as "no entry" means "no pod anywhere".
func (m pairCounts) add(n *cluster.NodeInfo, key string, delta int64) {
	v, ok := n.Node.Labels[key]
	if !ok {
		return
	}
	p := topologyPair{key, v}
	m[p] += delta
	if m[p] == 0 {
		delete(m, p)
	}
}

// affinityState is the inter-pod affinity filter's view of the cluster for
// the incoming pod.
type affinityState struct {
	// existingAnti counts, per domain, existing pods whose required
	// anti-affinity selects the incoming pod.
	existingAnti pairCounts
	// affinityCounts counts, per domain of each term's key, pods matching
	// all of the incoming pod's required affinity terms; antiCounts, pods
	// matching each of its required anti-affinity terms.
	affinityCounts pairCounts
	antiCounts     pairCounts
	// The incoming pod's terms, with namespace selectors resolved to names.
	affinityTerms []cluster.AffinityTerm
	antiTerms     []cluster.AffinityTerm
}

func (c *cycle) preFilterAffinity() error {
	s := &affinityState{existingAnti: pairCounts{}, affinityCounts: pairCounts{}, antiCounts: pairCounts{}}
	var err error
	if s.affinityTerms, err = c.e.resolveNamespaces(c.pi.RequiredAffinity); err != nil {
		return err
	}
	if s.antiTerms, err = c.e.resolveNamespaces(c.pi.RequiredAntiAffinity); err != nil {
		return err
	}
	for _, n := range c.allNodes {
		for _, p := range n.PodsWithRequiredAntiAffinity {
			for i := range p.RequiredAntiAffinity {
				if t := &p.RequiredAntiAffinity[i]; t.Matches(c.pod, c.nsLabels) {
					s.existingAnti.add(n, t.TopologyKey, 1)
				}
			}
		}
	}
	if len(s.affinityTerms) > 0 || len(s.antiTerms) > 0 {
		for _, n := range c.allNodes {
			for _, p := range n.Pods {
				s.countIncoming(p.Pod, n, 1)
			}
		}
	}
	if len(s.existingAnti) == 0 && len(s.affinityTerms) == 0 && len(s.antiTerms) == 0 {
		return nil
	}
	c.affinity = s
	return nil
}

// countIncoming counts an existing pod against the incoming pod's terms.
func (s *affinityState) countIncoming(p *v1.Pod, n *cluster.NodeInfo, delta int64) {
	if matchesAll(s.affinityTerms, p) {
		for i := range s.affinityTerms {
			s.affinityCounts.add(n, s.affinityTerms[i].TopologyKey, delta)
		}
	}
	for i := range s.antiTerms {
		if s.antiTerms[i].Matches(p, nil) {
			s.antiCounts.add(n, s.antiTerms[i].TopologyKey, delta)
		}
	}
}

// matchesAll reports whether p matches every term (false for no terms).
func matchesAll(terms []cluster.AffinityTerm, p *v1.Pod) bool {
	if len(terms) == 0 {
		return false
	}
	for i := range terms {
		if !terms[i].Matches(p, nil) {
			return false
		}
	}
	return true
}

// resolveNamespaces turns each term's namespace selector into the names of
// the namespaces it selects now (upstream does the same per cycle).
func (e *Engine) resolveNamespaces(terms []cluster.AffinityTerm) ([]cluster.AffinityTerm, error) {
	if len(terms) == 0 {
		return nil, nil
	}
	out := make([]cluster.AffinityTerm, len(terms))
	for i, t := range terms {
		out[i] = t
		if t.NamespaceSelector.Empty() {
			continue
		}
		out[i].Namespaces = t.Namespaces.Clone()
		if e.listers.Namespaces != nil {
			nss, err := e.listers.Namespaces.List(t.NamespaceSelector)
			if err != nil {
				return nil, fmt.Errorf("listing namespaces for an affinity term's namespaceSelector: %w", err)
			}
			for _, ns := range nss {
				out[i].Namespaces.Insert(ns.Name)
			}
		}
		out[i].NamespaceSelector = labels.Nothing()
	}
	return out, nil
}

// filterAffinity: n's domains hold pods matching the incoming pod's
// required affinity (unless no such pod exists anywhere and the pod
// matches its own terms: the first of a group), none matching its required
// anti-affinity, and no pod whose anti-affinity rejects the incoming pod.
func (c *cycle) filterAffinity(n *cluster.NodeInfo) Status {
	s := c.affinity
	if s == nil {
		return Status{}
	}
	nodeLabels := n.Node.Labels
	if len(s.affinityTerms) > 0 {
		podsExist := true
		for i := range s.affinityTerms {
			t := &s.affinityTerms[i]
			v, ok := nodeLabels[t.TopologyKey]
			if !ok {
				return rejectHard(FilterInterPodAffinity, reasonAffinityNotMatch)
			}
			if s.affinityCounts[topologyPair{t.TopologyKey, v}] <= 0 {
				podsExist = false
			}
		}
		if !podsExist && !(len(s.affinityCounts) == 0 && matchesAll(s.affinityTerms, c.pod)) {
			return rejectHard(FilterInterPodAffinity, reasonAffinityNotMatch)
		}
	}
	if len(s.antiCounts) > 0 {
		for i := range s.antiTerms {
			t := &s.antiTerms[i]
			if v, ok := nodeLabels[t.TopologyKey]; ok && s.antiCounts[topologyPair{t.TopologyKey, v}] > 0 {
				return reject(FilterInterPodAffinity, reasonAntiAffinityNotMatch)
			}
		}
	}
	if len(s.existingAnti) > 0 {
		for k, v := range nodeLabels {
			if s.existingAnti[topologyPair{k, v}] > 0 {
				return reject(FilterInterPodAffinity, reasonExistingAntiAffinity)
			}
		}
	}
	return Status{}
}

func (s *affinityState) clone() *affinityState {
	if s == nil {
		return nil
	}
	cp := *s
	cp.existingAnti = maps.Clone(s.existingAnti)
	cp.affinityCounts = maps.Clone(s.affinityCounts)
	cp.antiCounts = maps.Clone(s.antiCounts)
	return &cp
}

// update counts pod p added to (1) or removed from (-1) node n.
func (s *affinityState) update(c *cycle, p *cluster.PodInfo, n *cluster.NodeInfo, delta int64) {
	if s == nil {
		return
	}
	for i := range p.RequiredAntiAffinity {
		if t := &p.RequiredAntiAffinity[i]; t.Matches(c.pod, c.nsLabels) {
			s.existingAnti.add(n, t.TopologyKey, delta)
		}
	}
	s.countIncoming(p.Pod, n, delta)
}

// affinityScore sums, per topology domain, the weights of preferred terms
// (and required affinity of existing pods, at HardPodAffinityWeight)
// linking the incoming pod with pods in that domain.
type affinityScore struct {
	topo map[string]map[string]int64
}

// preScoreAffinity returns nil when no term links the pod with any other.
func (c *cycle) preScoreAffinity() (*affinityScore, error) {
	hasOwn := len(c.pi.PreferredAffinity) > 0 || len(c.pi.PreferredAntiAffinity) > 0
	prefAff, err := c.e.resolveWeighted(c.pi.PreferredAffinity)
	if err != nil {
		return nil, err
	}
	prefAnti, err := c.e.resolveWeighted(c.pi.PreferredAntiAffinity)
	if err != nil {
		return nil, err
	}
	s := &affinityScore{topo: map[string]map[string]int64{}}
	add := func(t *cluster.AffinityTerm, weight int64, p *v1.Pod, nsLabels labels.Set, n *cluster.NodeInfo) {
		if !t.Matches(p, nsLabels) {
			return
		}
		v, ok := n.Node.Labels[t.TopologyKey]
		if !ok {
			return
		}
		if s.topo[t.TopologyKey] == nil {
			s.topo[t.TopologyKey] = map[string]int64{}
		}
		s.topo[t.TopologyKey][v] += weight
	}
	hard := int64(c.e.cfg.HardPodAffinityWeight)
	for _, n := range c.allNodes {
		pods := n.PodsWithAffinity
		if hasOwn {
			pods = n.Pods
		}
		if len(pods) == 0 || len(n.Node.Labels) == 0 {
			continue
		}
		for _, p := range pods {
			for i := range prefAff {
				add(&prefAff[i].AffinityTerm, int64(prefAff[i].Weight), p.Pod, nil, n)
			}
			for i := range prefAnti {
				add(&prefAnti[i].AffinityTerm, -int64(prefAnti[i].Weight), p.Pod, nil, n)
			}
			if hard > 0 {
				for i := range p.RequiredAffinity {
					add(&p.RequiredAffinity[i], hard, c.pod, c.nsLabels, n)
				}
			}
			for i := range p.PreferredAffinity {
				add(&p.PreferredAffinity[i].AffinityTerm, int64(p.PreferredAffinity[i].Weight), c.pod, c.nsLabels, n)
			}
			for i := range p.PreferredAntiAffinity {
				add(&p.PreferredAntiAffinity[i].AffinityTerm, -int64(p.PreferredAntiAffinity[i].Weight), c.pod, c.nsLabels, n)
			}
		}
	}
	if len(s.topo) == 0 {
		return nil, nil
	}
	return s, nil
}

func (e *Engine) resolveWeighted(terms []cluster.WeightedAffinityTerm) ([]cluster.WeightedAffinityTerm, error) {
	if len(terms) == 0 {
		return nil, nil
	}
	plain := make([]cluster.AffinityTerm, len(terms))
	for i := range terms {
		plain[i] = terms[i].AffinityTerm
	}
	resolved, err := e.resolveNamespaces(plain)
	if err != nil {
		return nil, err
	}
	out := make([]cluster.WeightedAffinityTerm, len(terms))
	for i := range terms {
		out[i] = cluster.WeightedAffinityTerm{AffinityTerm: resolved[i], Weight: terms[i].Weight}
	}
	return out, nil
}

func (s *affinityScore) score(n *cluster.NodeInfo) int64 {
	var total int64
	for key, values := range s.topo {
		if v, ok := n.Node.Labels[key]; ok {
			total += values[v]
		}
	}
	return total
}

// normalize maps the scores linearly onto 0..100 between their minimum and
// maximum.
func (s *affinityScore) normalize(scores []int64) {
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, v := range scores {
		lo, hi = min(lo, v), max(hi, v)
	}
	for i, v := range scores {
		if hi > lo {
			scores[i] = int64(float64(maxNodeScore) * float64(v-lo) / float64(hi-lo))
		} else {
			scores[i] = 0
		}
	}
}
