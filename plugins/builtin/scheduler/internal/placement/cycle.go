package placement

import (
	"context"
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

// cycle is one attempt to place one pod: what the filters precomputed for
// it (upstream's PreFilter) and, later, what the scores precompute. During
// the parallel node scan it is read-only; the few parts that depend on
// other pods (spread and inter-pod affinity counts) are cloned when a node
// is evaluated with pods added or removed (nominated pods, preemption).
type cycle struct {
	ctx      context.Context
	e        *Engine
	snap     Snapshot
	nom      Nominator
	pi       *cluster.PodInfo
	pod      *v1.Pod
	allNodes []*cluster.NodeInfo
	nsLabels labels.Set

	// restricted lists the only nodes worth filtering when the pod names
	// them (spec.nodeName, matchFields on metadata.name) and restrictedBy
	// is not empty.
	restricted   []*cluster.NodeInfo
	restrictedBy FilterSet

	// Per-filter state, nil when the filter has nothing to check.
	nodeAffinity *nodeaffinity.RequiredNodeAffinity
	volumes      *volumeState
	spread       *spreadState
	affinity     *affinityState
}

// newCycle runs the filters' pre-checks. A non-OK status rejects the pod
// on every node (upstream: a PreFilter rejection).
func (e *Engine) newCycle(ctx context.Context, snap Snapshot, nom Nominator, pi *cluster.PodInfo, nodes []*cluster.NodeInfo) (*cycle, Status, error) {
	c := &cycle{ctx: ctx, e: e, snap: snap, nom: nom, pi: pi, pod: pi.Pod, allNodes: nodes}
	c.nsLabels = e.namespaceLabels(pi.Pod.Namespace)

	var allowed sets.Set[string]
	restrict := func(f FilterID, names sets.Set[string]) {
		c.restrictedBy = c.restrictedBy.With(f)
		if allowed == nil {
			allowed = names
		} else {
			allowed = allowed.Intersection(names)
		}
	}
	if name := pi.Pod.Spec.NodeName; name != "" {
		restrict(FilterNodeName, sets.New(name))
	}
	if st := c.preFilterNodeAffinity(restrict); !st.OK() {
		return c, st, nil
	}
	if allowed != nil {
		if allowed.Len() == 0 {
			return c, rejectHard(c.restrictedBy.first(), emptyRestrictionMessage(c.restrictedBy)), nil
		}
		for _, name := range sets.List(allowed) {
			if n := snap.Node(name); n != nil {
				c.restricted = append(c.restricted, n)
			}
		}
	}
	st, err := c.preFilterVolumes()
	if err != nil || !st.OK() {
		return c, st, err
	}
	if st, err := c.preFilterSpread(); err != nil || !st.OK() {
		return c, st, err
	}
	if err := c.preFilterAffinity(); err != nil {
		return c, Status{}, err
	}
	return c, Status{}, nil
}

// filter runs every filter on n in upstream's order and returns the first
// rejection.
func (c *cycle) filter(n *cluster.NodeInfo) Status {
	if st := c.filterNodeName(n); !st.OK() {
		return st
	}
	if st := c.filterUnschedulable(n); !st.OK() {
		return st
	}
	if st := c.filterTaints(n); !st.OK() {
		return st
	}
	if st := c.filterNodeAffinity(n); !st.OK() {
		return st
	}
	if st := c.filterPorts(n); !st.OK() {
		return st
	}
	if st := c.filterResources(n); !st.OK() {
		return st
	}
	if st := c.filterVolumeBinding(n); !st.OK() {
		return st
	}
	if st := c.filterVolumeZone(n); !st.OK() {
		return st
	}
	if st := c.filterSpread(n); !st.OK() {
		return st
	}
	return c.filterAffinity(n)
}

// filterWithNominated filters n as if the pods nominated to it with at
// least this pod's priority were already there, and, when there are such
// pods, also without them (their anti-affinity may be what lets this pod
// in; both must pass, as upstream).
func (c *cycle) filterWithNominated(n *cluster.NodeInfo) Status {
	if nominated := c.nominatedFor(n.Name); len(nominated) > 0 {
		nn := n.Clone()
		cc := c.cloneCounts()
		for _, p := range nominated {
			nn.AddPod(p)
			cc.podAdded(p, nn)
		}
		if st := cc.filter(nn); !st.OK() {
			return st
		}
	}
	return c.filter(n)
}

func (c *cycle) nominatedFor(node string) []*cluster.PodInfo {
	if c.nom == nil {
		return nil
	}
	var out []*cluster.PodInfo
	for _, p := range c.nom.NominatedPods(node) {
		if p.Pod.UID != c.pod.UID && p.Priority >= c.pi.Priority {
			out = append(out, p)
		}
	}
	return out
}

// cloneCounts copies the cycle with its own copy of the state that depends
// on other pods.
func (c *cycle) cloneCounts() *cycle {
	cc := *c
	cc.spread = c.spread.clone()
	cc.affinity = c.affinity.clone()
	return &cc
}

// podAdded and podRemoved keep the pod-dependent state in step with a pod
// added to or removed from node n (a clone) during a what-if evaluation.
func (c *cycle) podAdded(p *cluster.PodInfo, n *cluster.NodeInfo) {
	c.spread.update(c, p, n, 1)
	c.affinity.update(c, p, n, 1)
}

func (c *cycle) podRemoved(p *cluster.PodInfo, n *cluster.NodeInfo) {
	c.spread.update(c, p, n, -1)
	c.affinity.update(c, p, n, -1)
}

// namespaceLabels returns the labels of namespace ns (empty if unknown),
// which namespace selectors in other pods' affinity terms match against.
func (e *Engine) namespaceLabels(ns string) labels.Set {
	if e.listers.Namespaces == nil {
		return nil
	}
	n, err := e.listers.Namespaces.Get(ns)
	if err != nil {
		return nil
	}
	return labels.Set(n.Labels)
}

// Diagnosis records why nodes were rejected.
type Diagnosis struct {
	rejected []nodeStatus
	// absent is the status of nodes not filtered at all (pre-check
	// rejection or restriction).
	absent Status
	// PreFilterMsg is set when the pre-checks rejected the pod outright.
	PreFilterMsg string
	// PostFilterMsg is preemption's outcome, appended to the message.
	PostFilterMsg string
	// Rejectors are the filters that rejected the pod somewhere.
	Rejectors FilterSet
}

type nodeStatus struct {
	node *cluster.NodeInfo
	st   Status
}

func (d *Diagnosis) add(n *cluster.NodeInfo, st Status) {
	d.rejected = append(d.rejected, nodeStatus{node: n, st: st})
	d.Rejectors = d.Rejectors.With(st.Filter)
}

// status returns the recorded verdict for a node, and whether there was one.
func (d *Diagnosis) status(name string) (Status, bool) {
	for _, ns := range d.rejected {
		if ns.node.Name == name {
			return ns.st, true
		}
	}
	return d.absent, d.absent.Code != Success
}

// FitError says that no node fits a pod; its message is upstream's
// ("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had
// untolerated taint(s). preemption: ...").
type FitError struct {
	Pod         *v1.Pod
	NumAllNodes int
	Diagnosis   *Diagnosis
}

func (f *FitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "0/%d nodes are available:", f.NumAllNodes)
	d := f.Diagnosis
	if d.PreFilterMsg != "" {
		fmt.Fprintf(&b, " %s.", d.PreFilterMsg)
	} else if hist := reasonHistogram(d, f.NumAllNodes); len(hist) > 0 {
		fmt.Fprintf(&b, " %s.", strings.Join(hist, ", "))
	}
	if d.PostFilterMsg != "" {
		fmt.Fprintf(&b, " %s", d.PostFilterMsg)
	}
	return b.String()
}

// reasonHistogram counts each reason over the nodes, nodes that were not
// filtered counting with the absent status, and sorts the "N reason"
// strings as upstream does (lexically).
func reasonHistogram(d *Diagnosis, numAll int) []string {
	counts := map[string]int{}
	for _, ns := range d.rejected {
		for _, r := range ns.st.Reasons {
			counts[r]++
		}
	}
	if absent := numAll - len(d.rejected); absent > 0 {
		for _, r := range d.absent.Reasons {
			counts[r] += absent
		}
	}
	out := make([]string, 0, len(counts))
	for r, n := range counts {
		out = append(out, fmt.Sprintf("%d %s", n, r))
	}
	slices.Sort(out)
	return out
}

// Unresolvable reports whether no node could take the pod even after
// preemption, so preemption need not be tried.
func (f *FitError) Unresolvable() bool {
	for _, ns := range f.Diagnosis.rejected {
		if ns.st.Code == Unschedulable {
			return false
		}
	}
	absent := f.NumAllNodes - len(f.Diagnosis.rejected)
	return absent <= 0 || f.Diagnosis.absent.Code != Unschedulable
}
