// Package placement decides where a pod goes: it filters nodes with
// upstream kube-scheduler's predicates (node name, selector and affinity,
// taints and node conditions, resources, host ports, volumes, topology
// spread, inter-pod affinity), scores a sample of the feasible ones with
// upstream's priorities, and when nothing fits chooses lower-priority pods
// to preempt. Reasons, formulas and the sampling rule follow upstream
// kube-scheduler v1.37 so that placements and messages match it.
package placement

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

// Weights are the score weights; 0 turns a score off. Each score is
// normalized to 0..100 before weighting.
type Weights struct {
	TaintToleration    int64
	NodeAffinity       int64
	NodeResourcesFit   int64 // least allocated
	BalancedAllocation int64
	PodTopologySpread  int64
	InterPodAffinity   int64
}

// DefaultWeights are upstream's.
func DefaultWeights() Weights {
	return Weights{TaintToleration: 3, NodeAffinity: 2, NodeResourcesFit: 1, BalancedAllocation: 1, PodTopologySpread: 2, InterPodAffinity: 2}
}

// Config tunes an Engine.
type Config struct {
	// PercentageOfNodesToScore bounds how many feasible nodes are looked
	// for before scoring, in percent of the nodes; 0 means upstream's
	// adaptive rule (50% minus 1% per 125 nodes, at least 5%), and never
	// fewer than 100 nodes.
	PercentageOfNodesToScore int32
	// Parallelism is how many goroutines filter and score nodes.
	Parallelism int
	Weights     Weights
	// HardPodAffinityWeight scores nodes where existing pods' required
	// affinity terms match the incoming pod (upstream default 1).
	HardPodAffinityWeight int32
	// SystemDefaultSpreading applies upstream's default topology spread
	// (hostname skew 3, zone skew 5, ScheduleAnyway) to pods without
	// constraints that belong to a Service, ReplicaSet, StatefulSet or
	// ReplicationController.
	SystemDefaultSpreading bool
	// Preemption lets pods evict lower-priority pods when nothing fits.
	Preemption bool
	// MinCandidateNodesPercentage and MinCandidateNodesAbsolute bound how
	// many nodes preemption evaluates (upstream: 10% and 100).
	MinCandidateNodesPercentage int32
	MinCandidateNodesAbsolute   int32
}

// Listers are the informer caches the filters and preemption read.
type Listers struct {
	Namespaces             corelisters.NamespaceLister
	PVCs                   corelisters.PersistentVolumeClaimLister
	PVs                    corelisters.PersistentVolumeLister
	StorageClasses         storagelisters.StorageClassLister
	Services               corelisters.ServiceLister
	ReplicationControllers corelisters.ReplicationControllerLister
	ReplicaSets            appslisters.ReplicaSetLister
	StatefulSets           appslisters.StatefulSetLister
	PDBs                   policylisters.PodDisruptionBudgetLister
}

// Snapshot is the cluster state a cycle reads; cluster.Cache implements it.
type Snapshot interface {
	// Nodes lists the existing nodes in scan order.
	Nodes() []*cluster.NodeInfo
	// Node returns an existing node by name, or nil.
	Node(name string) *cluster.NodeInfo
}

// Nominator lists the pods nominated to run on a node (by preemption) that
// are not bound yet; filters treat those of higher or equal priority as if
// they were already there, so nobody takes the room freed for them.
type Nominator interface {
	NominatedPods(node string) []*cluster.PodInfo
}

// Engine places pods. It keeps the scan position between cycles and
// scratch buffers, so it must be used by one goroutine at a time.
type Engine struct {
	cfg     Config
	listers Listers
	rand    *rand.Rand
	// nextStart is where the next scan starts, so that successive pods
	// sample different nodes (upstream's nextStartNodeIndex).
	nextStart int
	scratch   scanScratch
	counts    *matchCounts
	assumed   VolumeAssumptions
}

// New returns an Engine; rnd breaks score ties (seed it in tests).
func New(cfg Config, listers Listers, rnd *rand.Rand) *Engine {
	if cfg.Parallelism < 1 {
		cfg.Parallelism = 1
	}
	return &Engine{cfg: cfg, listers: listers, rand: rnd, counts: newMatchCounts()}
}

// Result is where a pod goes.
type Result struct {
	Node string
	// Volumes is how the pod's claims that wait for their first consumer
	// get volumes on Node; nil when it has none.
	Volumes *VolumePlan
	// Evaluated counts the nodes filtered, Feasible those that passed.
	Evaluated, Feasible int
}

// ErrNoNodes is returned when the cluster has no node.
var ErrNoNodes = errors.New(NoNodesAvailable)

// Schedule picks a node for pi. It returns *FitError when no node fits and
// another error when the attempt itself failed.
func (e *Engine) Schedule(ctx context.Context, snap Snapshot, nom Nominator, pi *cluster.PodInfo) (Result, error) {
	nodes := snap.Nodes()
	if len(nodes) == 0 {
		return Result{}, ErrNoNodes
	}
	if pi.ParseErr != nil {
		return Result{}, pi.ParseErr
	}
	c, st, err := e.newCycle(ctx, snap, nom, pi, nodes)
	if err != nil {
		return Result{}, err
	}
	diag := &Diagnosis{}
	if !st.OK() {
		diag.PreFilterMsg = st.Message()
		diag.absent = st
		diag.Rejectors = diag.Rejectors.With(st.Filter)
		return Result{}, &FitError{Pod: pi.Pod, NumAllNodes: len(nodes), Diagnosis: diag}
	}
	candidates := nodes
	if c.restrictedBy != 0 {
		candidates = c.restricted
		diag.absent = rejectHard(c.restrictedBy.first(), fmt.Sprintf("node(s) didn't satisfy plugin(s) %v", c.restrictedBy.sortedNames()))
	}

	// A pod nominated by an earlier preemption tries its node first.
	if nnn := pi.Pod.Status.NominatedNodeName; nnn != "" {
		if n := snap.Node(nnn); n != nil && (c.restrictedBy == 0 || containsNode(c.restricted, n)) {
			if st := c.filterWithNominated(n); st.OK() {
				return c.withVolumes(Result{Node: n.Name, Evaluated: 1, Feasible: 1})
			}
		}
	}

	if len(candidates) == 0 {
		return Result{}, &FitError{Pod: pi.Pod, NumAllNodes: len(nodes), Diagnosis: diag}
	}
	want := e.numFeasibleNodesToFind(len(candidates))
	if !e.cfg.Weights.any() {
		want = 1
	}
	feasible, scanned := e.findFeasible(c, candidates, want, diag)
	e.nextStart = (e.nextStart + scanned) % len(nodes)
	if len(feasible) == 0 {
		return Result{}, &FitError{Pod: pi.Pod, NumAllNodes: len(nodes), Diagnosis: diag}
	}
	res := Result{Evaluated: len(feasible) + len(diag.rejected), Feasible: len(feasible)}
	if len(feasible) == 1 {
		res.Node = feasible[0].Name
		return c.withVolumes(res)
	}
	totals, err := c.prioritize(feasible)
	if err != nil {
		return Result{}, err
	}
	res.Node = feasible[e.selectHost(totals)].Name
	return c.withVolumes(res)
}

// withVolumes adds the volume plan for the chosen node.
func (c *cycle) withVolumes(res Result) (Result, error) {
	plan, err := c.plan(res.Node)
	if err != nil {
		return Result{}, err
	}
	res.Volumes = plan
	return res, nil
}

// numFeasibleNodesToFind is upstream's sampling rule.
func (e *Engine) numFeasibleNodesToFind(numAll int) int {
	const minFeasible, minPercent = 100, 5
	if numAll < minFeasible {
		return numAll
	}
	pct := int(e.cfg.PercentageOfNodesToScore)
	if pct == 0 {
		pct = max(50-numAll/125, minPercent)
	}
	n := numAll * pct / 100
	return max(n, minFeasible)
}

// selectHost returns the index of a highest total, choosing uniformly among
// ties.
func (e *Engine) selectHost(totals []int64) int {
	best, ties := 0, 1
	for i := 1; i < len(totals); i++ {
		switch {
		case totals[i] > totals[best]:
			best, ties = i, 1
		case totals[i] == totals[best]:
			ties++
			if e.rand.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return best
}

func (w Weights) any() bool {
	return w.TaintToleration != 0 || w.NodeAffinity != 0 || w.NodeResourcesFit != 0 ||
		w.BalancedAllocation != 0 || w.PodTopologySpread != 0 || w.InterPodAffinity != 0
}

func containsNode(nodes []*cluster.NodeInfo, n *cluster.NodeInfo) bool {
	for _, m := range nodes {
		if m == n {
			return true
		}
	}
	return false
}

func (s FilterSet) first() FilterID {
	for f := FilterID(0); f < numFilters; f++ {
		if s.Has(f) {
			return f
		}
	}
	return FilterNodeName
}

// sortedNames lists the names alphabetically, as upstream prints plugin
// sets.
func (s FilterSet) sortedNames() []string {
	names := s.Names()
	slices.Sort(names)
	return names
}

// emptyRestrictionMessage is upstream's reason when the nodes that the
// filters' pre-checks allow (a pod naming nodes through spec.nodeName and
// matchFields) have nothing in common.
func emptyRestrictionMessage(by FilterSet) string {
	names := by.sortedNames()
	if len(names) == 1 {
		return fmt.Sprintf("node(s) didn't satisfy plugin %s", names[0])
	}
	return fmt.Sprintf("node(s) didn't satisfy plugin(s) %v simultaneously", names)
}
