package placement

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

// Preemption is the decision to make room for a pod on Node by deleting
// Victims; the pod is then nominated to Node and retried once they are
// gone.
type Preemption struct {
	Node    string
	Victims []*v1.Pod
}

// candidate is a node where removing victims lets the pod fit.
type candidate struct {
	node          *cluster.NodeInfo
	victims       []*cluster.PodInfo
	pdbViolations int
}

// PreemptOutcome is what preemption decided for a pod no node fits.
type PreemptOutcome struct {
	// Preemption is the room to make, nil when preemption cannot help.
	*Preemption
	// ClearNomination is set when preemption found no node at all, so a
	// nomination from an earlier preemption no longer holds. When
	// preemption declined for now (an earlier one is under way) it stays.
	ClearNomination bool
}

// Preempt looks for lower-priority pods whose removal lets pi fit, after
// Schedule failed with fitErr, and records its outcome in fitErr's message
// (upstream's "preemption: ..." suffix).
func (e *Engine) Preempt(ctx context.Context, snap Snapshot, nom Nominator, pi *cluster.PodInfo, fitErr *FitError) (PreemptOutcome, error) {
	out, msg, err := e.preempt(ctx, snap, nom, pi, fitErr)
	if msg != "" {
		fitErr.Diagnosis.PostFilterMsg = "preemption: " + msg
	}
	return out, err
}

func (e *Engine) preempt(ctx context.Context, snap Snapshot, nom Nominator, pi *cluster.PodInfo, fitErr *FitError) (PreemptOutcome, string, error) {
	none := PreemptOutcome{ClearNomination: true}
	if ok, msg := e.eligibleToPreempt(snap, pi, fitErr.Diagnosis); !ok {
		return PreemptOutcome{}, msg, nil
	}
	nodes := snap.Nodes()
	potential := potentialNodes(nodes, fitErr.Diagnosis)
	if len(potential) == 0 {
		return none, notHelpful(len(nodes), &Diagnosis{}).Error(), nil
	}
	c, st, err := e.newCycle(ctx, snap, nom, pi, nodes)
	if err != nil {
		return PreemptOutcome{}, "", err
	}
	if !st.OK() {
		return none, st.Message(), nil
	}
	var pdbs []*policyv1.PodDisruptionBudget
	if e.listers.PDBs != nil {
		if pdbs, err = e.listers.PDBs.List(labels.Everything()); err != nil {
			return PreemptOutcome{}, "", fmt.Errorf("listing PodDisruptionBudgets: %w", err)
		}
	}
	want := int(int32(len(potential)) * e.cfg.MinCandidateNodesPercentage / 100)
	want = min(max(want, int(e.cfg.MinCandidateNodesAbsolute)), len(potential))
	offset := e.rand.IntN(len(potential))

	var clean, violating []candidate
	dryRun := &Diagnosis{}
	for i := range potential {
		if len(clean) > 0 && len(clean)+len(violating) >= want {
			break
		}
		n := potential[(offset+i)%len(potential)]
		cand, st := c.selectVictims(n, pdbs)
		switch {
		case !st.OK():
			dryRun.add(n, st)
		case cand.pdbViolations == 0:
			clean = append(clean, cand)
		default:
			violating = append(violating, cand)
		}
	}
	candidates := append(clean, violating...)
	if len(candidates) == 0 {
		return none, notHelpful(len(nodes), dryRun).Error(), nil
	}
	best := pickCandidate(candidates)
	victims := make([]*v1.Pod, len(best.victims))
	for i, v := range best.victims {
		victims[i] = v.Pod
	}
	msg := fmt.Sprintf("found a potential placement for pod on node %v, preempting %d victims", best.node.Name, len(victims))
	return PreemptOutcome{Preemption: &Preemption{Node: best.node.Name, Victims: victims}}, msg, nil
}

func notHelpful(numAll int, d *Diagnosis) *FitError {
	d.absent = rejectHard(0, reasonPreemptionNotHelpful)
	return &FitError{NumAllNodes: numAll, Diagnosis: d}
}

// eligibleToPreempt refuses pods that must not preempt, and pods whose
// earlier preemption is still under way on their nominated node.
func (e *Engine) eligibleToPreempt(snap Snapshot, pi *cluster.PodInfo, d *Diagnosis) (bool, string) {
	if p := pi.Pod.Spec.PreemptionPolicy; p != nil && *p == v1.PreemptNever {
		return false, "not eligible due to preemptionPolicy=Never."
	}
	nnn := pi.Pod.Status.NominatedNodeName
	if nnn == "" {
		return true, ""
	}
	if st, ok := d.status(nnn); ok && st.Code == UnschedulableAndUnresolvable {
		return true, ""
	}
	if n := snap.Node(nnn); n != nil {
		for _, p := range n.Pods {
			if p.Priority < pi.Priority && terminatingByPreemption(p.Pod) {
				return false, "not eligible due to a terminating pod on the nominated node."
			}
		}
	}
	return true, ""
}

func terminatingByPreemption(p *v1.Pod) bool {
	if p.DeletionTimestamp == nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == v1.DisruptionTarget {
			return c.Status == v1.ConditionTrue && c.Reason == v1.PodReasonPreemptionByScheduler
		}
	}
	return false
}

// potentialNodes are the nodes that rejected the pod for a reason that
// removing pods can fix.
func potentialNodes(nodes []*cluster.NodeInfo, d *Diagnosis) []*cluster.NodeInfo {
	var out []*cluster.NodeInfo
	if d.absent.Code == Unschedulable {
		explicit := make(map[string]bool, len(d.rejected))
		for _, ns := range d.rejected {
			explicit[ns.node.Name] = true
		}
		for _, n := range nodes {
			if !explicit[n.Name] {
				out = append(out, n)
			}
		}
	}
	for _, ns := range d.rejected {
		if ns.st.Code == Unschedulable {
			out = append(out, ns.node)
		}
	}
	return out
}

// selectVictims finds the fewest, least important lower-priority pods on n
// whose removal lets the pod fit: it removes them all, checks the pod fits,
// then adds back as many as still allow it, most important first, pods
// whose eviction would violate a PodDisruptionBudget before the others.
func (c *cycle) selectVictims(n *cluster.NodeInfo, pdbs []*policyv1.PodDisruptionBudget) (candidate, Status) {
	var potential []*cluster.PodInfo
	for _, p := range n.Pods {
		if p.Priority < c.pi.Priority {
			potential = append(potential, p)
		}
	}
	if len(potential) == 0 {
		return candidate{}, rejectHard(0, reasonNoVictims)
	}
	nn := n.Clone()
	cc := c.cloneCounts()
	for _, p := range potential {
		nn.RemovePod(p.Pod.UID)
		cc.podRemoved(p, nn)
	}
	if st := cc.filterWithNominated(nn); !st.OK() {
		return candidate{}, st
	}
	now := time.Now()
	slices.SortStableFunc(potential, func(a, b *cluster.PodInfo) int { return moreImportant(a, b, now) })
	violatingPods, cleanPods := splitByPDB(potential, pdbs)

	cand := candidate{node: n}
	reprieve := func(p *cluster.PodInfo) bool {
		nn.AddPod(p)
		cc.podAdded(p, nn)
		if cc.filterWithNominated(nn).OK() {
			return true
		}
		nn.RemovePod(p.Pod.UID)
		cc.podRemoved(p, nn)
		cand.victims = append(cand.victims, p)
		return false
	}
	for _, p := range violatingPods {
		if !reprieve(p) {
			cand.pdbViolations++
		}
	}
	for _, p := range cleanPods {
		reprieve(p)
	}
	if len(violatingPods) > 0 && len(cleanPods) > 0 {
		slices.SortStableFunc(cand.victims, func(a, b *cluster.PodInfo) int { return moreImportant(a, b, now) })
	}
	return cand, Status{}
}

// moreImportant orders pods most important first: higher priority, then
// longer running.
func moreImportant(a, b *cluster.PodInfo, now time.Time) int {
	if a.Priority != b.Priority {
		if a.Priority > b.Priority {
			return -1
		}
		return 1
	}
	return startTime(a.Pod, now).Compare(startTime(b.Pod, now))
}

// startTime is when a pod started; pods not started yet count as starting
// now.
func startTime(p *v1.Pod, now time.Time) time.Time {
	if p.Status.StartTime != nil {
		return p.Status.StartTime.Time
	}
	return now
}

// splitByPDB separates pods whose eviction would exceed a budget's allowed
// disruptions (counting the earlier pods of the list against it) from the
// others.
func splitByPDB(pods []*cluster.PodInfo, pdbs []*policyv1.PodDisruptionBudget) (violating, clean []*cluster.PodInfo) {
	allowed := make([]int32, len(pdbs))
	selectors := make([]labels.Selector, len(pdbs))
	for i, pdb := range pdbs {
		allowed[i] = pdb.Status.DisruptionsAllowed
		if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err == nil {
			selectors[i] = sel
		}
	}
	for _, p := range pods {
		violates := false
		if len(p.Pod.Labels) > 0 {
			for i, pdb := range pdbs {
				sel := selectors[i]
				if pdb.Namespace != p.Pod.Namespace || sel == nil || sel.Empty() || !sel.Matches(labels.Set(p.Pod.Labels)) {
					continue
				}
				if _, disrupted := pdb.Status.DisruptedPods[p.Pod.Name]; disrupted {
					continue
				}
				allowed[i]--
				if allowed[i] < 0 {
					violates = true
				}
			}
		}
		if violates {
			violating = append(violating, p)
		} else {
			clean = append(clean, p)
		}
	}
	return violating, clean
}

// pickCandidate applies upstream's criteria in turn until one node is left:
// fewest PDB violations, lowest highest-priority victim, smallest sum of
// priorities, fewest victims, latest start of the most important victims.
func pickCandidate(cands []candidate) candidate {
	now := time.Now()
	scores := []func(c *candidate) int64{
		func(c *candidate) int64 { return -int64(c.pdbViolations) },
		func(c *candidate) int64 { return -int64(c.victims[0].Priority) },
		func(c *candidate) int64 {
			var sum int64
			for _, v := range c.victims {
				// The offset keeps negative priorities from making a
				// longer list look cheaper.
				sum += int64(v.Priority) + int64(math.MaxInt32) + 1
			}
			return -sum
		},
		func(c *candidate) int64 { return -int64(len(c.victims)) },
		func(c *candidate) int64 { return earliestStartOfTopPriority(c.victims, now).UnixNano() },
	}
	left := cands
	for _, score := range scores {
		best := int64(math.MinInt64)
		var kept []candidate
		for i := range left {
			s := score(&left[i])
			if s > best {
				best, kept = s, kept[:0]
			}
			if s == best {
				kept = append(kept, left[i])
			}
		}
		if len(kept) == 1 {
			return kept[0]
		}
		left = kept
	}
	return left[0]
}

// earliestStartOfTopPriority is the earliest start among the victims of the
// highest priority.
func earliestStartOfTopPriority(victims []*cluster.PodInfo, now time.Time) time.Time {
	top := victims[0].Priority
	earliest := startTime(victims[0].Pod, now)
	for _, v := range victims[1:] {
		switch {
		case v.Priority > top:
			top, earliest = v.Priority, startTime(v.Pod, now)
		case v.Priority == top:
			if t := startTime(v.Pod, now); t.Before(earliest) {
				earliest = t
			}
		}
	}
	return earliest
}
