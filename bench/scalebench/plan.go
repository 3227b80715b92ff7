package main

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// The Deployment sizes of clusterloader2's load test.
const (
	smallReplicas  = 5
	mediumReplicas = 30
	bigReplicas    = 250
)

// planSpec is the scale of one load phase.
type planSpec struct {
	Nodes             int
	PodsPerNode       int
	NodesPerNamespace int
	// Seed makes the order of creation and the scale factors repeatable.
	Seed uint64
}

// deployment is one Deployment of the load (with a Service of the same
// name): created with Replicas, scaled to Scaled, then deleted.
type deployment struct {
	Namespace, Name  string
	Replicas, Scaled int32
}

// plan is the whole load phase.
type plan struct {
	Namespaces  []string
	Deployments []deployment // in creation order
}

// Pods is the number of pods the plan runs after creation and after the
// scale step.
func (p plan) Pods() (created, scaled int) {
	for _, d := range p.Deployments {
		created += int(d.Replicas)
		scaled += int(d.Scaled)
	}
	return created, scaled
}

// makePlan splits Nodes*PodsPerNode pods over one namespace per
// NodesPerNamespace nodes as clusterloader2's load test does: in each
// namespace a quarter of the pods in Deployments of 250 replicas, a quarter
// in Deployments of 30 and the rest in Deployments of 5 (whole Deployments
// only, so a namespace too small for a big one has none). The order of
// creation is shuffled so that sizes interleave, and each Deployment's
// scaled size is its size times a factor drawn uniformly from [0.5, 1.5].
func makePlan(s planSpec) (plan, error) {
	switch {
	case s.Nodes < 1:
		return plan{}, fmt.Errorf("-nodes %d: want at least 1", s.Nodes)
	case s.PodsPerNode < 1:
		return plan{}, fmt.Errorf("-pods-per-node %d: want at least 1", s.PodsPerNode)
	case s.NodesPerNamespace < 1:
		return plan{}, fmt.Errorf("-nodes-per-namespace %d: want at least 1", s.NodesPerNamespace)
	}
	rng := rand.New(rand.NewPCG(s.Seed, 0x5ca1e))
	var p plan
	for left, i := s.Nodes, 0; left > 0; i++ {
		nodes := min(left, s.NodesPerNamespace)
		left -= nodes
		ns := fmt.Sprintf("scale-%03d", i)
		p.Namespaces = append(p.Namespaces, ns)
		pods := nodes * s.PodsPerNode
		big := pods / 4 / bigReplicas
		medium := pods / 4 / mediumReplicas
		small := (pods - big*bigReplicas - medium*mediumReplicas) / smallReplicas
		for _, g := range []struct {
			kind     string
			n        int
			replicas int32
		}{{"big", big, bigReplicas}, {"medium", medium, mediumReplicas}, {"small", small, smallReplicas}} {
			for j := range g.n {
				p.Deployments = append(p.Deployments, deployment{Namespace: ns, Name: fmt.Sprintf("%s-%d", g.kind, j), Replicas: g.replicas})
			}
		}
	}
	rng.Shuffle(len(p.Deployments), func(i, j int) { p.Deployments[i], p.Deployments[j] = p.Deployments[j], p.Deployments[i] })
	for i := range p.Deployments {
		d := &p.Deployments[i]
		d.Scaled = int32(math.Round(float64(d.Replicas) * (0.5 + rng.Float64())))
	}
	return p, nil
}
