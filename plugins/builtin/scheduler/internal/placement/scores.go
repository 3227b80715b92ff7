package placement

import (
	"fmt"
	"math"

	v1 "k8s.io/api/core/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

// maxNodeScore is the best score a node can get from one score.
const maxNodeScore = 100

// prioritize returns the weighted total score of every feasible node.
func (c *cycle) prioritize(feasible []*cluster.NodeInfo) ([]int64, error) {
	w := c.e.cfg.Weights
	totals := make([]int64, len(feasible))
	c.scoreResources(feasible, totals)
	// The other scores are normalized over the feasible nodes before
	// weighting; each fills raw.
	raw := make([]int64, len(feasible))
	steps := []struct {
		weight int64
		score  func([]*cluster.NodeInfo, []int64) (bool, error)
	}{
		{w.TaintToleration, c.scoreTaints},
		{w.NodeAffinity, c.scoreNodeAffinity},
		{w.PodTopologySpread, c.scoreSpread},
		{w.InterPodAffinity, c.scoreAffinity},
	}
	for _, step := range steps {
		if step.weight == 0 {
			continue
		}
		scored, err := step.score(feasible, raw)
		if err != nil {
			return nil, err
		}
		if !scored {
			continue
		}
		for j, v := range raw {
			totals[j] += step.weight * v
		}
	}
	return totals, nil
}

// scoreResources adds the weighted least-allocated and balanced-allocation
// scores, which need no normalization.
func (c *cycle) scoreResources(feasible []*cluster.NodeInfo, totals []int64) {
	w := c.e.cfg.Weights
	balanced := w.BalancedAllocation != 0 && (c.pi.Requests.MilliCPU != 0 || c.pi.Requests.Memory != 0)
	if w.NodeResourcesFit == 0 && !balanced {
		return
	}
	c.e.parallel(len(feasible), func(lo, hi int) {
		for j := lo; j < hi; j++ {
			n := feasible[j]
			if w.NodeResourcesFit != 0 {
				totals[j] += w.NodeResourcesFit * leastAllocated(c.pi, n)
			}
			if balanced {
				totals[j] += w.BalancedAllocation * balancedAllocation(c.pi, n)
			}
		}
	})
}

func (c *cycle) scoreTaints(feasible []*cluster.NodeInfo, raw []int64) (bool, error) {
	tolerations := preferNoScheduleTolerations(c.pod.Spec.Tolerations)
	for j, n := range feasible {
		raw[j] = intolerablePreferNoSchedule(n, tolerations)
	}
	defaultNormalize(raw, true)
	return true, nil
}

func (c *cycle) scoreNodeAffinity(feasible []*cluster.NodeInfo, raw []int64) (bool, error) {
	a := c.pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || len(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
		return false, nil
	}
	terms, err := nodeaffinity.NewPreferredSchedulingTerms(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
	if err != nil {
		return false, fmt.Errorf("parsing preferred node affinity: %w", err)
	}
	for j, n := range feasible {
		raw[j] = terms.Score(n.Node)
	}
	defaultNormalize(raw, false)
	return true, nil
}

func (c *cycle) scoreSpread(feasible []*cluster.NodeInfo, raw []int64) (bool, error) {
	s, err := c.preScoreSpread(feasible)
	if err != nil || s == nil {
		return false, err
	}
	c.e.parallel(len(feasible), func(lo, hi int) {
		for j := lo; j < hi; j++ {
			raw[j] = s.score(j, feasible[j])
		}
	})
	s.normalize(raw)
	return true, nil
}

func (c *cycle) scoreAffinity(feasible []*cluster.NodeInfo, raw []int64) (bool, error) {
	s, err := c.preScoreAffinity()
	if err != nil || s == nil {
		return false, err
	}
	for j, n := range feasible {
		raw[j] = s.score(n)
	}
	s.normalize(raw)
	return true, nil
}

// leastAllocated favours nodes with the most cpu and memory left after the
// pod, counting pods without requests at the default requests: the mean of
// (allocatable - requested) * 100 / allocatable over cpu and memory.
func leastAllocated(pi *cluster.PodInfo, n *cluster.NodeInfo) int64 {
	var sum, count int64
	if alloc := n.Allocatable.MilliCPU; alloc != 0 {
		sum += leastRequested(n.NonZeroCPU+pi.NonZeroCPU, alloc)
		count++
	}
	if alloc := n.Allocatable.Memory; alloc != 0 {
		sum += leastRequested(n.NonZeroMemory+pi.NonZeroMemory, alloc)
		count++
	}
	if count == 0 {
		return 0
	}
	return sum / count
}

func leastRequested(requested, capacity int64) int64 {
	if capacity == 0 || requested > capacity {
		return 0
	}
	return (capacity - requested) * maxNodeScore / capacity
}

// balancedAllocation favours nodes whose cpu and memory usage stay close
// to each other, judged by how much the pod improves or worsens that
// balance (upstream v1.37's formula: 50 + (50 + with - without) / 2).
func balancedAllocation(pi *cluster.PodInfo, n *cluster.NodeInfo) int64 {
	allocCPU, allocMem := n.Allocatable.MilliCPU, n.Allocatable.Memory
	with := balanceScore(n.Requested.MilliCPU+pi.Requests.MilliCPU, allocCPU, n.Requested.Memory+pi.Requests.Memory, allocMem)
	without := balanceScore(n.Requested.MilliCPU, allocCPU, n.Requested.Memory, allocMem)
	return maxNodeScore/2 + (maxNodeScore/2+with-without)/2
}

// balanceScore is 100 * (1 - standard deviation of the usage fractions),
// fractions capped at 1, resources without allocatable left out.
func balanceScore(cpu, allocCPU, mem, allocMem int64) int64 {
	var fractions [2]float64
	k := 0
	for _, p := range [2][2]int64{{cpu, allocCPU}, {mem, allocMem}} {
		if p[1] == 0 {
			continue
		}
		fractions[k] = min(float64(p[0])/float64(p[1]), 1)
		k++
	}
	std := 0.0
	if k == 2 {
		std = math.Abs((fractions[0] - fractions[1]) / 2)
	}
	return int64((1 - std) * maxNodeScore)
}

func preferNoScheduleTolerations(all []v1.Toleration) []v1.Toleration {
	var out []v1.Toleration
	for _, t := range all {
		if t.Effect == "" || t.Effect == v1.TaintEffectPreferNoSchedule {
			out = append(out, t)
		}
	}
	return out
}

// intolerablePreferNoSchedule counts the node's PreferNoSchedule taints the
// pod does not tolerate.
func intolerablePreferNoSchedule(n *cluster.NodeInfo, tolerations []v1.Toleration) int64 {
	if n.PreferNoSchedule == 0 {
		return 0
	}
	if len(tolerations) == 0 {
		return int64(n.PreferNoSchedule)
	}
	var count int64
	for i := range n.Taints {
		t := &n.Taints[i]
		if t.Effect == v1.TaintEffectPreferNoSchedule && !tolerates(tolerations, t) {
			count++
		}
	}
	return count
}

// defaultNormalize scales scores so the highest becomes 100 (or, reversed,
// 0, for scores where less is better).
func defaultNormalize(scores []int64, reverse bool) {
	var hi int64
	for _, v := range scores {
		hi = max(hi, v)
	}
	if hi == 0 {
		if reverse {
			for i := range scores {
				scores[i] = maxNodeScore
			}
		}
		return
	}
	for i, v := range scores {
		v = maxNodeScore * v / hi
		if reverse {
			v = maxNodeScore - v
		}
		scores[i] = v
	}
}
