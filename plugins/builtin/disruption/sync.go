package disruption

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	pdbhelper "k8s.io/component-helpers/apps/poddisruptionbudget"

	"github.com/keelson/keelson/plugins/sdk"
)

// reconcile brings one budget's status up to date. When that fails for
// any reason but a write conflict, the budget is first made safe (no
// disruptions allowed, DisruptionAllowed False with reason SyncFailed),
// as upstream does, and then retried with backoff (upstream waits for the
// next event instead).
func (c *controller) reconcile(ctx context.Context, key string) (sdk.Result, error) {
	obj, ok, err := c.pdbs.GetByKey(key)
	if err != nil || !ok {
		return sdk.Result{}, err
	}
	pdb := obj.(*policyv1.PodDisruptionBudget)
	recheck, err := c.trySync(ctx, pdb)
	if err == nil {
		return sdk.Result{RequeueAfter: recheck}, nil
	}
	if apierrors.IsConflict(err) {
		return sdk.Result{}, err
	}
	c.logger.Warn("syncing PodDisruptionBudget failed; allowing no disruptions", "pdb", key, "error", err)
	if ferr := c.failSafe(ctx, pdb, err); ferr != nil {
		return sdk.Result{}, fmt.Errorf("writing SyncFailed status of PodDisruptionBudget %s after %w: %w", key, err, ferr)
	}
	return sdk.Result{}, fmt.Errorf("syncing PodDisruptionBudget %s: %w", key, err)
}

// trySync computes and writes the status; it returns how long until an
// entry of status.disruptedPods expires (zero if none is kept).
func (c *controller) trySync(ctx context.Context, pdb *policyv1.PodDisruptionBudget) (time.Duration, error) {
	ps, err := c.podsOf(pdb)
	if err != nil {
		c.events.Eventf(pdb, v1.EventTypeWarning, "NoPods", "Failed to get pods: %v", err)
		return 0, err
	}
	if len(ps) == 0 {
		c.events.Eventf(pdb, v1.EventTypeNormal, "NoPods", "No matching pods found")
	}
	expected, desired, unmanaged, err := c.expectedPodCount(ctx, pdb, ps)
	if err != nil {
		c.events.Eventf(pdb, v1.EventTypeWarning, "CalculateExpectedPodCountFailed", "Failed to calculate the number of expected pods: %v", err)
		return 0, err
	}
	if len(unmanaged) > 0 {
		c.logger.Debug("pods without a controller selected by a PodDisruptionBudget", "pdb", pdbKey(pdb), "pods", unmanaged)
		c.events.Eventf(pdb, v1.EventTypeWarning, "UnmanagedPods", "Pods selected by this PodDisruptionBudget (selector: %v) were found "+
			"to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. "+
			"To account for these pods please set \".spec.minAvailable\" "+
			"field of the PDB to an integer value.", pdb.Spec.Selector)
	}
	now := c.clock.Now()
	disrupted, recheck := c.disruptedPods(pdb, ps, now)
	healthy := countHealthy(ps, disrupted, now)
	if err := c.updateStatus(ctx, pdb, healthy, desired, expected, disrupted); err != nil {
		return 0, err
	}
	if recheck == nil {
		return 0, nil
	}
	// An entry expiring right now is dropped by the next sync, not this one.
	return max(recheck.Sub(now), time.Millisecond), nil
}

// podsOf lists the cached pods the budget's selector matches (an empty
// selector matches every pod of the namespace, as in policy/v1).
func (c *controller) podsOf(pdb *policyv1.PodDisruptionBudget) ([]*v1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		return nil, err
	}
	objs, err := c.pods.ByIndex(cache.NamespaceIndex, pdb.Namespace)
	if err != nil {
		return nil, err
	}
	var out []*v1.Pod
	for _, o := range objs {
		if p, ok := o.(*v1.Pod); ok && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	// In name order, so that a failure names the same pod every time and
	// the SyncFailed message does not change from one sync to the next.
	slices.SortFunc(out, func(a, b *v1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// updateStatus writes the computed status unless it is already there.
func (c *controller) updateStatus(ctx context.Context, pdb *policyv1.PodDisruptionBudget, healthy, desired, expected int32, disrupted map[string]metav1.Time) error {
	// A budget that expects no pods allows nothing: its first pods may
	// appear before this controller has counted them.
	allowed := healthy - desired
	if expected <= 0 || allowed <= 0 {
		allowed = 0
	}
	st := pdb.Status
	if st.CurrentHealthy == healthy && st.DesiredHealthy == desired && st.ExpectedPods == expected &&
		st.DisruptionsAllowed == allowed && apiequality.Semantic.DeepEqual(st.DisruptedPods, disrupted) &&
		st.ObservedGeneration == pdb.Generation && pdbhelper.ConditionsAreUpToDate(pdb) {
		return nil
	}
	next := pdb.DeepCopy()
	next.Status = policyv1.PodDisruptionBudgetStatus{
		CurrentHealthy:     healthy,
		DesiredHealthy:     desired,
		ExpectedPods:       expected,
		DisruptionsAllowed: allowed,
		DisruptedPods:      disrupted,
		ObservedGeneration: pdb.Generation,
		Conditions:         next.Status.Conditions,
	}
	pdbhelper.UpdateDisruptionAllowedCondition(next)
	return c.writeStatus(ctx, next)
}

// failSafe sets disruptionsAllowed to 0 with a SyncFailed condition
// carrying cause, so that no eviction is approved on a status that could
// not be computed.
func (c *controller) failSafe(ctx context.Context, pdb *policyv1.PodDisruptionBudget, cause error) error {
	next := pdb.DeepCopy()
	next.Status.DisruptionsAllowed = 0
	if next.Status.Conditions == nil {
		next.Status.Conditions = []metav1.Condition{}
	}
	apimeta.SetStatusCondition(&next.Status.Conditions, metav1.Condition{
		Type:               policyv1.DisruptionAllowedCondition,
		Status:             metav1.ConditionFalse,
		Reason:             policyv1.SyncFailedReason,
		Message:            cause.Error(),
		ObservedGeneration: next.Status.ObservedGeneration,
	})
	return c.writeStatus(ctx, next)
}

// writeStatus writes pdb's status, conditioned on the resourceVersion it
// was read at: the eviction subresource writes the same status.
func (c *controller) writeStatus(ctx context.Context, pdb *policyv1.PodDisruptionBudget) error {
	_, err := c.client.PolicyV1().PodDisruptionBudgets(pdb.Namespace).UpdateStatus(ctx, pdb, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("updating status of PodDisruptionBudget %s: %w", pdbKey(pdb), err)
	}
	return nil
}
