package placement

import (
	"fmt"
	"maps"
	"math"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

// spreadConstraint is a topology spread constraint with its selector
// parsed and its defaults applied.
type spreadConstraint struct {
	maxSkew            int32
	topologyKey        string
	selector           labels.Selector
	minDomains         int32
	nodeAffinityPolicy v1.NodeInclusionPolicy
	nodeTaintsPolicy   v1.NodeInclusionPolicy
}

// systemDefaultConstraints are upstream's default spreading for pods that
// set none and belong to a Service or a controller.
var systemDefaultConstraints = []v1.TopologySpreadConstraint{
	{TopologyKey: v1.LabelHostname, WhenUnsatisfiable: v1.ScheduleAnyway, MaxSkew: 3},
	{TopologyKey: v1.LabelTopologyZone, WhenUnsatisfiable: v1.ScheduleAnyway, MaxSkew: 5},
}

// spreadConstraints returns the pod's constraints of the given kind: its
// own, or (with system defaulting) the defaults with a selector derived
// from its Services and controller. defaulted says which.
func (c *cycle) spreadConstraints(action v1.UnsatisfiableConstraintAction) (cs []spreadConstraint, defaulted bool, err error) {
	if len(c.pod.Spec.TopologySpreadConstraints) > 0 {
		cs, err = parseConstraints(c.pod.Spec.TopologySpreadConstraints, c.pod.Labels, action)
		return cs, false, err
	}
	if !c.e.cfg.SystemDefaultSpreading {
		return nil, false, nil
	}
	cs, err = parseConstraints(systemDefaultConstraints, c.pod.Labels, action)
	if err != nil || len(cs) == 0 {
		return nil, true, err
	}
	sel := c.e.defaultSelector(c.pod)
	if sel.Empty() {
		return nil, true, nil
	}
	for i := range cs {
		cs[i].selector = sel
	}
	return cs, true, nil
}

func parseConstraints(in []v1.TopologySpreadConstraint, podLabels map[string]string, action v1.UnsatisfiableConstraintAction) ([]spreadConstraint, error) {
	var out []spreadConstraint
	for _, tc := range in {
		if tc.WhenUnsatisfiable != action {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(tc.LabelSelector)
		if err != nil {
			return nil, fmt.Errorf("topologySpreadConstraints (%s): labelSelector: %w", tc.TopologyKey, err)
		}
		// matchLabelKeys narrows the selector to pods sharing the
		// incoming pod's values for those keys (e.g. one revision).
		for _, key := range tc.MatchLabelKeys {
			if v, ok := podLabels[key]; ok {
				r, err := labels.NewRequirement(key, "=", []string{v})
				if err != nil {
					return nil, fmt.Errorf("topologySpreadConstraints (%s): matchLabelKeys %q: %w", tc.TopologyKey, key, err)
				}
				sel = sel.Add(*r)
			}
		}
		sc := spreadConstraint{
			maxSkew: tc.MaxSkew, topologyKey: tc.TopologyKey, selector: sel, minDomains: 1,
			nodeAffinityPolicy: v1.NodeInclusionPolicyHonor, nodeTaintsPolicy: v1.NodeInclusionPolicyIgnore,
		}
		if tc.MinDomains != nil {
			sc.minDomains = *tc.MinDomains
		}
		if tc.NodeAffinityPolicy != nil {
			sc.nodeAffinityPolicy = *tc.NodeAffinityPolicy
		}
		if tc.NodeTaintsPolicy != nil {
			sc.nodeTaintsPolicy = *tc.NodeTaintsPolicy
		}
		out = append(out, sc)
	}
	return out, nil
}

// includes reports whether node n counts for constraint sc of the pod: with
// the Honor policies, only nodes the pod could go to by its node affinity
// and taints count as domains.
func (c *cycle) includes(sc *spreadConstraint, n *cluster.NodeInfo) bool {
	if sc.nodeAffinityPolicy == v1.NodeInclusionPolicyHonor && c.nodeAffinity != nil {
		if ok, _ := c.nodeAffinity.Match(n.Node); !ok {
			return false
		}
	}
	if sc.nodeTaintsPolicy == v1.NodeInclusionPolicyHonor && !c.filterTaints(n).OK() {
		return false
	}
	return true
}

func hasAllKeys(nodeLabels map[string]string, cs []spreadConstraint) bool {
	for i := range cs {
		if _, ok := nodeLabels[cs[i].topologyKey]; !ok {
			return false
		}
	}
	return true
}

// countMatching counts the pods on n in namespace ns that sel selects,
// leaving out pods being deleted.
func countMatching(n *cluster.NodeInfo, sel labels.Selector, ns string) int {
	if sel.Empty() {
		return 0
	}
	count := 0
	for _, p := range n.Pods {
		if p.Pod.DeletionTimestamp == nil && p.Pod.Namespace == ns && sel.Matches(labels.Set(p.Pod.Labels)) {
			count++
		}
	}
	return count
}

// counters returns a cached matching-pod counter per constraint.
func (c *cycle) counters(cs []spreadConstraint) []*nodeCounter {
	out := make([]*nodeCounter, len(cs))
	for i := range cs {
		out[i] = c.e.counts.forSelector(cs[i].selector, c.pod.Namespace)
	}
	return out
}

// spreadState holds, for each hard constraint, how many matching pods each
// domain has and the two least loaded domains.
type spreadState struct {
	constraints []spreadConstraint
	counts      []map[string]int
	paths       []criticalPaths
}

// criticalPaths are the two domains with the fewest matching pods (two, so
// that the minimum stays known when a pod moves out of the first).
type criticalPaths [2]struct {
	value string
	num   int
}

func newCriticalPaths() criticalPaths {
	var p criticalPaths
	p[0].num, p[1].num = math.MaxInt32, math.MaxInt32
	return p
}

func (p *criticalPaths) update(value string, num int) {
	i := -1
	if value == p[0].value {
		i = 0
	} else if value == p[1].value {
		i = 1
	}
	if i >= 0 {
		p[i].num = num
		if p[0].num > p[1].num {
			p[0], p[1] = p[1], p[0]
		}
		return
	}
	if num < p[0].num {
		p[1] = p[0]
		p[0].value, p[0].num = value, num
	} else if num < p[1].num {
		p[1].value, p[1].num = value, num
	}
}

func (c *cycle) preFilterSpread() (Status, error) {
	cs, _, err := c.spreadConstraints(v1.DoNotSchedule)
	if err != nil {
		return Status{}, err
	}
	if len(cs) == 0 {
		return Status{}, nil
	}
	s := &spreadState{constraints: cs, counts: make([]map[string]int, len(cs)), paths: make([]criticalPaths, len(cs))}
	for i := range cs {
		s.counts[i] = map[string]int{}
	}
	counters := c.counters(cs)
	for _, n := range c.allNodes {
		if !hasAllKeys(n.Node.Labels, cs) {
			continue
		}
		for i := range cs {
			if !c.includes(&cs[i], n) {
				continue
			}
			s.counts[i][n.Node.Labels[cs[i].topologyKey]] += counters[i].count(n)
		}
	}
	for i := range cs {
		s.paths[i] = newCriticalPaths()
		for v, num := range s.counts[i] {
			s.paths[i].update(v, num)
		}
	}
	c.spread = s
	return Status{}, nil
}

// filterSpread: placing the pod on n keeps every hard constraint's skew
// (matching pods in n's domain plus this pod, minus the least loaded
// domain) within maxSkew.
func (c *cycle) filterSpread(n *cluster.NodeInfo) Status {
	s := c.spread
	if s == nil {
		return Status{}
	}
	podLabels := labels.Set(c.pod.Labels)
	for i := range s.constraints {
		sc := &s.constraints[i]
		value, ok := n.Node.Labels[sc.topologyKey]
		if !ok {
			return rejectHard(FilterPodTopologySpread, reasonSpreadMissingLabel)
		}
		minMatch := s.paths[i][0].num
		if len(s.counts[i]) < int(sc.minDomains) {
			minMatch = 0
		}
		self := 0
		if sc.selector.Matches(podLabels) {
			self = 1
		}
		if s.counts[i][value]+self-minMatch > int(sc.maxSkew) {
			return reject(FilterPodTopologySpread, reasonSpreadNotMatch)
		}
	}
	return Status{}
}

func (s *spreadState) clone() *spreadState {
	if s == nil {
		return nil
	}
	cp := &spreadState{constraints: s.constraints, counts: make([]map[string]int, len(s.counts)), paths: append([]criticalPaths(nil), s.paths...)}
	for i, m := range s.counts {
		cp.counts[i] = maps.Clone(m)
	}
	return cp
}

// update counts pod p added to (delta 1) or removed from (-1) node n.
func (s *spreadState) update(c *cycle, p *cluster.PodInfo, n *cluster.NodeInfo, delta int) {
	if s == nil || p.Pod.Namespace != c.pod.Namespace || !hasAllKeys(n.Node.Labels, s.constraints) {
		return
	}
	podLabels := labels.Set(p.Pod.Labels)
	for i := range s.constraints {
		sc := &s.constraints[i]
		if !sc.selector.Matches(podLabels) || !c.includes(sc, n) {
			continue
		}
		v := n.Node.Labels[sc.topologyKey]
		s.counts[i][v] += delta
		s.paths[i].update(v, s.counts[i][v])
	}
}

// defaultSelector selects the pods that share a Service or controller with
// pod, for the system default spreading.
func (e *Engine) defaultSelector(pod *v1.Pod) labels.Selector {
	set := labels.Set{}
	if e.listers.Services != nil {
		if svcs, err := e.listers.Services.Services(pod.Namespace).List(labels.Everything()); err == nil {
			for _, svc := range svcs {
				if svc.Spec.Selector != nil && labels.Set(svc.Spec.Selector).AsSelectorPreValidated().Matches(labels.Set(pod.Labels)) {
					set = labels.Merge(set, svc.Spec.Selector)
				}
			}
		}
	}
	sel := set.AsSelector()
	owner := metav1.GetControllerOfNoCopy(pod)
	if owner == nil {
		return sel
	}
	gv, err := schema.ParseGroupVersion(owner.APIVersion)
	if err != nil {
		return sel
	}
	var ls *metav1.LabelSelector
	switch gv.WithKind(owner.Kind) {
	case v1.SchemeGroupVersion.WithKind("ReplicationController"):
		if e.listers.ReplicationControllers != nil {
			if rc, err := e.listers.ReplicationControllers.ReplicationControllers(pod.Namespace).Get(owner.Name); err == nil {
				return labels.Merge(set, rc.Spec.Selector).AsSelector()
			}
		}
		return sel
	case schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}:
		if e.listers.ReplicaSets != nil {
			if rs, err := e.listers.ReplicaSets.ReplicaSets(pod.Namespace).Get(owner.Name); err == nil {
				ls = rs.Spec.Selector
			}
		}
	case schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}:
		if e.listers.StatefulSets != nil {
			if ss, err := e.listers.StatefulSets.StatefulSets(pod.Namespace).Get(owner.Name); err == nil {
				ls = ss.Spec.Selector
			}
		}
	}
	if ls != nil {
		if other, err := metav1.LabelSelectorAsSelector(ls); err == nil {
			if reqs, ok := other.Requirements(); ok {
				sel = sel.Add(reqs...)
			}
		}
	}
	return sel
}

// spreadScore is the soft spreading state: pods matching each constraint
// per domain among all nodes, and each constraint's weight.
type spreadScore struct {
	constraints []spreadConstraint
	ignored     []bool // by feasible index: nodes missing a topology label
	counts      []map[string]int64
	// hostCounts holds, for hostname constraints, the matching pods of
	// each feasible node (counted once, before the parallel scoring).
	hostCounts [][]int64
	weights    []float64
}

// preScoreSpread prepares scoring of the feasible nodes; nil when the pod
// has no soft constraint.
func (c *cycle) preScoreSpread(feasible []*cluster.NodeInfo) (*spreadScore, error) {
	cs, defaulted, err := c.spreadConstraints(v1.ScheduleAnyway)
	if err != nil || len(cs) == 0 {
		return nil, err
	}
	s := &spreadScore{constraints: cs, ignored: make([]bool, len(feasible)), counts: make([]map[string]int64, len(cs)), weights: make([]float64, len(cs))}
	requireAll := !defaulted
	s.registerDomains(feasible, requireAll)
	counters := c.counters(cs)
	c.countDomains(s, counters, requireAll)
	s.hostCounts = make([][]int64, len(cs))
	for i := range cs {
		if cs[i].topologyKey != v1.LabelHostname {
			continue
		}
		s.hostCounts[i] = make([]int64, len(feasible))
		for j, n := range feasible {
			s.hostCounts[i][j] = int64(counters[i].count(n))
		}
	}
	return s, nil
}

// registerDomains records the domains of the feasible nodes (only those get
// counted) and weighs each constraint by the log of its domain count; with
// requireAll, nodes missing a key are ignored.
func (s *spreadScore) registerDomains(feasible []*cluster.NodeInfo, requireAll bool) {
	cs := s.constraints
	for i := range cs {
		s.counts[i] = map[string]int64{}
	}
	sizes := make([]int, len(cs))
	ignored := 0
	for j, n := range feasible {
		if requireAll && !hasAllKeys(n.Node.Labels, cs) {
			s.ignored[j] = true
			ignored++
			continue
		}
		for i := range cs {
			if cs[i].topologyKey == v1.LabelHostname {
				continue
			}
			v := n.Node.Labels[cs[i].topologyKey]
			if _, ok := s.counts[i][v]; !ok {
				s.counts[i][v] = 0
				sizes[i]++
			}
		}
	}
	for i := range cs {
		size := sizes[i]
		if cs[i].topologyKey == v1.LabelHostname {
			size = len(feasible) - ignored
		}
		s.weights[i] = math.Log(float64(size + 2))
	}
}

// countDomains adds up the matching pods of every node into the registered
// domains. Hostname domains are single nodes, counted for the feasible ones
// only; this loop over every node (the hot one for the replicas of big
// workloads) reads each other key once per node.
func (c *cycle) countDomains(s *spreadScore, counters []*nodeCounter, requireAll bool) {
	cs := s.constraints
	values := make([]string, len(cs))
nodes:
	for _, n := range c.allNodes {
		for i := range cs {
			v, ok := n.Node.Labels[cs[i].topologyKey]
			if requireAll && !ok {
				continue nodes
			}
			values[i] = v
		}
		for i := range cs {
			if cs[i].topologyKey == v1.LabelHostname || !c.includes(&cs[i], n) {
				continue
			}
			if cnt, ok := s.counts[i][values[i]]; ok {
				s.counts[i][values[i]] = cnt + int64(counters[i].count(n))
			}
		}
	}
}

// score is higher for nodes in domains with more matching pods; the
// normalization inverts it.
func (s *spreadScore) score(j int, n *cluster.NodeInfo) int64 {
	if s.ignored[j] {
		return 0
	}
	var score float64
	for i := range s.constraints {
		sc := &s.constraints[i]
		v, ok := n.Node.Labels[sc.topologyKey]
		if !ok {
			continue
		}
		var cnt int64
		if sc.topologyKey == v1.LabelHostname {
			cnt = s.hostCounts[i][j]
		} else {
			cnt = s.counts[i][v]
		}
		score += float64(cnt)*s.weights[i] + float64(sc.maxSkew-1)
	}
	return int64(math.Round(score))
}

// normalize maps raw scores so the least crowded node gets 100 and ignored
// nodes 0.
func (s *spreadScore) normalize(scores []int64) {
	minScore, maxScore := int64(math.MaxInt64), int64(0)
	for j, v := range scores {
		if s.ignored[j] {
			continue
		}
		minScore = min(minScore, v)
		maxScore = max(maxScore, v)
	}
	for j, v := range scores {
		switch {
		case s.ignored[j]:
			scores[j] = 0
		case maxScore == 0:
			scores[j] = maxNodeScore
		default:
			scores[j] = maxNodeScore * (maxScore + minScore - v) / maxScore
		}
	}
}

// tolerates is shared by the taint score.
func tolerates(tolerations []v1.Toleration, t *v1.Taint) bool {
	return corev1helpers.TolerationsTolerateTaint(noLog, tolerations, t, false)
}
