package disruption

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/keelson/keelson/plugins/builtin/internal/pods"
)

// expectedPodCount returns how many pods the budget expects and how many
// of them must be healthy, as upstream: an integer minAvailable is taken
// as is over the pods found (no controller needed); a percentage, and any
// maxUnavailable, are taken of the sum of the pods' controllers' scales,
// rounding up. Pods with no controller are returned by name (they are
// left out of that sum).
func (c *controller) expectedPodCount(ctx context.Context, pdb *policyv1.PodDisruptionBudget, ps []*v1.Pod) (expected, desired int32, unmanaged []string, err error) {
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		expected, unmanaged, err = c.expectedScale(ctx, ps)
		if err != nil {
			return 0, 0, nil, err
		}
		maxUnavailable, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, int(expected), true)
		if err != nil {
			return 0, 0, nil, err
		}
		return expected, max(expected-int32(maxUnavailable), 0), unmanaged, nil
	case pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.Type == intstr.Int:
		return int32(len(ps)), pdb.Spec.MinAvailable.IntVal, nil, nil
	case pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.Type == intstr.String:
		expected, unmanaged, err = c.expectedScale(ctx, ps)
		if err != nil {
			return 0, 0, nil, err
		}
		minAvailable, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, int(expected), true)
		if err != nil {
			return 0, 0, nil, err
		}
		return expected, int32(minAvailable), unmanaged, nil
	}
	return 0, 0, nil, nil
}

// expectedScale sums the scales of the controllers of ps, each controller
// counted once (a ReplicaSet's pods count under its Deployment). A pod
// whose controller reference leads to no known controller is an error.
func (c *controller) expectedScale(ctx context.Context, ps []*v1.Pod) (int32, []string, error) {
	var unmanaged []string
	scales := map[types.UID]int32{}
	// byRef remembers what each controller reference led to, so pods of
	// the same controller cost one lookup.
	byRef := map[types.UID]bool{}
	for _, p := range ps {
		ref := metav1.GetControllerOfNoCopy(p)
		if ref == nil {
			unmanaged = append(unmanaged, p.Name)
			continue
		}
		if byRef[ref.UID] {
			continue
		}
		found, err := c.findController(ctx, ref, p.Namespace)
		if err != nil {
			return 0, nil, err
		}
		if found == nil {
			return 0, nil, fmt.Errorf("found no controllers for pod %q", p.Name)
		}
		scales[found.uid] = found.replicas
		byRef[ref.UID] = true
	}
	var sum int32
	for _, n := range scales {
		sum += n
	}
	return sum, unmanaged, nil
}

// findController asks each finder in turn.
func (c *controller) findController(ctx context.Context, ref *metav1.OwnerReference, ns string) (*controllerScale, error) {
	for _, find := range c.finders() {
		found, err := find(ctx, ref, ns)
		if err != nil || found != nil {
			return found, err
		}
	}
	return nil, nil
}

// countHealthy counts the ready pods that are neither being deleted nor
// recently evicted (listed in disrupted less than DeletionTimeout ago).
func countHealthy(ps []*v1.Pod, disrupted map[string]metav1.Time, now time.Time) int32 {
	var n int32
	for _, p := range ps {
		if p.DeletionTimestamp != nil {
			continue
		}
		if at, ok := disrupted[p.Name]; ok && at.Add(DeletionTimeout).After(now) {
			continue
		}
		if pods.IsReady(p) {
			n++
		}
	}
	return n
}

// disruptedPods returns the entries of the budget's status.disruptedPods
// still to be kept: pods that exist, are not yet being deleted and were
// evicted less than DeletionTimeout ago. Expired entries get a NotDeleted
// event on their pod. recheck is when the earliest kept entry expires.
func (c *controller) disruptedPods(pdb *policyv1.PodDisruptionBudget, ps []*v1.Pod, now time.Time) (kept map[string]metav1.Time, recheck *time.Time) {
	kept = map[string]metav1.Time{}
	if pdb.Status.DisruptedPods == nil {
		return kept, nil
	}
	for _, p := range ps {
		if p.DeletionTimestamp != nil {
			continue
		}
		at, ok := pdb.Status.DisruptedPods[p.Name]
		if !ok {
			continue
		}
		expires := at.Add(DeletionTimeout)
		if expires.Before(now) {
			c.logger.Info("pod was expected to be deleted but was not; dropping it from the budget's disruptedPods",
				"pod", p.Namespace+"/"+p.Name, "evicted", at.Time, "pdb", pdb.Name)
			c.events.Eventf(p, v1.EventTypeWarning, "NotDeleted", "Pod was expected by PDB %s/%s to be deleted but it wasn't", pdb.Namespace, pdb.Name)
			continue
		}
		kept[p.Name] = at
		if recheck == nil || expires.Before(*recheck) {
			recheck = &expires
		}
	}
	return kept, recheck
}
