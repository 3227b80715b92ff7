package pods

import (
	"math"
	"sort"
	"time"

	v1 "k8s.io/api/core/v1"
)

// phaseOrder ranks phases for deletion: pending pods go before pods in an
// unknown phase, which go before running ones. Other phases rank with
// pending (inactive pods never reach the ranking).
var phaseOrder = map[v1.PodPhase]int{v1.PodPending: 0, v1.PodUnknown: 1, v1.PodRunning: 2}

// SortForDeletion orders ps so that the pods a ReplicaSet should delete
// first come first, as kube-controller-manager ranks them:
//
//  1. not yet scheduled before scheduled;
//  2. Pending before Unknown before Running;
//  3. not ready before ready;
//  4. lower pod-deletion-cost before higher;
//  5. more colocated sibling pods (a higher rank) before fewer;
//  6. ready for a shorter time before longer;
//  7. more container restarts before fewer;
//  8. newer before older.
//
// Times in 6 and 8 compare on a log2 scale of their age at now, so pods of
// about the same age tie and are then ordered by UID: scale-down does not
// always hit the very newest pod. ranks[i] belongs to ps[i] and is reordered
// with it.
func SortForDeletion(ps []*v1.Pod, ranks []int, now time.Time) {
	sort.Sort(byDeletionOrder{pods: ps, ranks: ranks, now: now})
}

type byDeletionOrder struct {
	pods  []*v1.Pod
	ranks []int
	now   time.Time
}

func (s byDeletionOrder) Len() int { return len(s.pods) }

func (s byDeletionOrder) Swap(i, j int) {
	s.pods[i], s.pods[j] = s.pods[j], s.pods[i]
	s.ranks[i], s.ranks[j] = s.ranks[j], s.ranks[i]
}

func (s byDeletionOrder) Less(i, j int) bool {
	a, b := s.pods[i], s.pods[j]
	if a.Spec.NodeName != b.Spec.NodeName && (a.Spec.NodeName == "" || b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	if pa, pb := phaseOrder[a.Status.Phase], phaseOrder[b.Status.Phase]; pa != pb {
		return pa < pb
	}
	if ra, rb := IsReady(a), IsReady(b); ra != rb {
		return !ra
	}
	if ca, cb := DeletionCost(a), DeletionCost(b); ca != cb {
		return ca < cb
	}
	if s.ranks[i] != s.ranks[j] {
		return s.ranks[i] > s.ranks[j]
	}
	if IsReady(a) && IsReady(b) {
		ta, tb := readySince(a), readySince(b)
		if !ta.Equal(tb) {
			return s.newer(a, b, ta, tb)
		}
	}
	if more, differ := moreRestarts(a, b); differ {
		return more
	}
	if ta, tb := a.CreationTimestamp.Time, b.CreationTimestamp.Time; !ta.Equal(tb) {
		return s.newer(a, b, ta, tb)
	}
	return false
}

// newer reports whether time ta (of pod a) counts as more recent than tb
// (of pod b): a zero time is the most recent; on the log scale equal ranks
// fall back to UIDs.
func (s byDeletionOrder) newer(a, b *v1.Pod, ta, tb time.Time) bool {
	if s.now.IsZero() || ta.IsZero() || tb.IsZero() {
		return afterOrZero(ta, tb)
	}
	if d := logRank(ta, s.now) - logRank(tb, s.now); d != 0 {
		return d < 0
	}
	return a.UID < b.UID
}

func afterOrZero(t1, t2 time.Time) bool {
	if t1.IsZero() || t2.IsZero() {
		return t1.IsZero()
	}
	return t1.After(t2)
}

// logRank is the base-2 logarithm of t's age at now in nanoseconds, -1 for
// a time not in the past.
func logRank(t, now time.Time) int64 {
	age := now.Sub(t)
	if age <= 0 {
		return -1
	}
	return int64(math.Log2(float64(age)))
}

func readySince(p *v1.Pod) time.Time {
	if c := ReadyCondition(p); c != nil && c.Status == v1.ConditionTrue {
		return c.LastTransitionTime.Time
	}
	return time.Time{}
}

// moreRestarts compares the highest restart count of a's and b's regular
// containers, then of their sidecars (restartable init containers).
func moreRestarts(a, b *v1.Pod) (more, differ bool) {
	ra, sa := maxRestarts(a)
	rb, sb := maxRestarts(b)
	if ra != rb {
		return ra > rb, true
	}
	if sa != sb {
		return sa > sb, true
	}
	return false, false
}

func maxRestarts(p *v1.Pod) (regular, sidecar int32) {
	for _, c := range p.Status.ContainerStatuses {
		regular = max(regular, c.RestartCount)
	}
	sidecars := map[string]bool{}
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
			sidecars[c.Name] = true
		}
	}
	for _, c := range p.Status.InitContainerStatuses {
		if sidecars[c.Name] {
			sidecar = max(sidecar, c.RestartCount)
		}
	}
	return regular, sidecar
}

// ColocationRanks returns, for each pod of ps, how many active pods of
// related (pods of sibling ReplicaSets under the same owner, usually a
// superset of ps) run on the same node: deleting from crowded nodes first
// spreads what remains.
func ColocationRanks(ps, related []*v1.Pod) []int {
	onNode := map[string]int{}
	for _, p := range related {
		if IsActive(p) {
			onNode[p.Spec.NodeName]++
		}
	}
	ranks := make([]int, len(ps))
	for i, p := range ps {
		ranks[i] = onNode[p.Spec.NodeName]
	}
	return ranks
}
