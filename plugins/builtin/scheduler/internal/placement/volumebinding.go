package placement

import (
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/component-helpers/storage/volume"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

// reasonBindConflict rejects a node on which a claim waiting for its first
// consumer can neither get an existing volume nor be provisioned.
const reasonBindConflict = "node(s) didn't find available persistent volumes to bind"

// VolumeAssumptions are the volume decisions of pods whose binding is in
// flight, which the API objects may not show yet: a volume chosen for one
// claim is not offered to another, and a claim whose node was chosen is
// not placed elsewhere.
type VolumeAssumptions interface {
	// VolumeTaken reports whether the volume was chosen for a claim.
	VolumeTaken(pv string) bool
	// ClaimNode is the node chosen for a claim ("namespace/name").
	ClaimNode(claim string) (string, bool)
}

// SetVolumeAssumptions makes the engine honour a's decisions. The engine
// reads a only during Schedule, from the caller's goroutine and its own
// filter goroutines.
func (e *Engine) SetVolumeAssumptions(a VolumeAssumptions) { e.assumed = a }

// VolumePlan is how a pod's claims that wait for their first consumer get
// volumes on the chosen node (upstream VolumeBinding's PodVolumes): claims
// bound to existing volumes that fit the node, and claims handed to their
// provisioner with the node selected.
type VolumePlan struct {
	Node      string
	Bindings  []VolumeBinding
	Provision []*v1.PersistentVolumeClaim
}

// VolumeBinding pairs a claim with the volume chosen for it.
type VolumeBinding struct {
	Claim  *v1.PersistentVolumeClaim
	Volume *v1.PersistentVolume
}

// delayedClaims are the pod's unbound claims of WaitForFirstConsumer
// classes, smallest request first (so the smallest volumes go to the
// smallest claims), and the volumes of their classes.
type delayedClaims struct {
	claims  []*v1.PersistentVolumeClaim
	volumes map[string][]*v1.PersistentVolume
}

// addDelayed records a delayed claim and lists the volumes of its class.
func (c *cycle) addDelayed(s *volumeState, pvc *v1.PersistentVolumeClaim) error {
	d := &s.delayed
	d.claims = append(d.claims, pvc)
	slices.SortStableFunc(d.claims, func(a, b *v1.PersistentVolumeClaim) int {
		qa, qb := a.Spec.Resources.Requests[v1.ResourceStorage], b.Spec.Resources.Requests[v1.ResourceStorage]
		return qa.Cmp(qb)
	})
	class := volume.GetPersistentVolumeClaimClass(pvc)
	if _, ok := d.volumes[class]; ok {
		return nil
	}
	if d.volumes == nil {
		d.volumes = map[string][]*v1.PersistentVolume{}
	}
	if c.e.listers.PVs == nil {
		return fmt.Errorf("no PersistentVolume lister for class %q", class)
	}
	all, err := c.e.listers.PVs.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing PersistentVolumes: %w", err)
	}
	var pvs []*v1.PersistentVolume
	for _, pv := range all {
		if volume.GetPersistentVolumeClass(pv) == class {
			pvs = append(pvs, pv)
		}
	}
	// Equal candidates are chosen by name, the same way on every node.
	slices.SortFunc(pvs, func(a, b *v1.PersistentVolume) int { return compareStrings(a.Name, b.Name) })
	d.volumes[class] = pvs
	return nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// planVolumes decides how the delayed claims get volumes on node n, or
// returns the reason they cannot there.
func (c *cycle) planVolumes(n *cluster.NodeInfo) (*VolumePlan, string, error) {
	plan := &VolumePlan{Node: n.Name}
	byLabels := &v1.Node{ObjectMeta: n.Node.ObjectMeta}
	chosen := map[string]*v1.PersistentVolume{}
	var toProvision []*v1.PersistentVolumeClaim
	for _, pvc := range c.volumes.delayed.claims {
		if node, ok := c.selectedNode(pvc); ok {
			if node != n.Name {
				return nil, reasonBindConflict, nil
			}
			toProvision = append(toProvision, pvc)
			continue
		}
		pv, err := volume.FindMatchingVolume(pvc, c.freeVolumes(pvc), byLabels, chosen, true, true)
		if err != nil {
			return nil, "", err
		}
		if pv == nil {
			toProvision = append(toProvision, pvc)
			continue
		}
		chosen[pv.Name] = pv
		plan.Bindings = append(plan.Bindings, VolumeBinding{Claim: pvc, Volume: pv})
	}
	for _, pvc := range toProvision {
		ok, err := c.canProvision(pvc, n)
		if err != nil || !ok {
			return nil, reasonBindConflict, err
		}
		plan.Provision = append(plan.Provision, pvc)
	}
	return plan, "", nil
}

// selectedNode is the node already chosen for a claim: on the claim, or
// by a binding in flight.
func (c *cycle) selectedNode(pvc *v1.PersistentVolumeClaim) (string, bool) {
	if node, ok := pvc.Annotations[volume.AnnSelectedNode]; ok {
		return node, true
	}
	if c.e.assumed != nil {
		return c.e.assumed.ClaimNode(pvc.Namespace + "/" + pvc.Name)
	}
	return "", false
}

// freeVolumes are the volumes of the claim's class not taken by a binding
// in flight.
func (c *cycle) freeVolumes(pvc *v1.PersistentVolumeClaim) []*v1.PersistentVolume {
	pvs := c.volumes.delayed.volumes[volume.GetPersistentVolumeClaimClass(pvc)]
	if c.e.assumed == nil {
		return pvs
	}
	var out []*v1.PersistentVolume
	for _, pv := range pvs {
		if !c.e.assumed.VolumeTaken(pv.Name) {
			out = append(out, pv)
		}
	}
	return out
}

// canProvision: the claim's class has a provisioner and allows the node's
// topology.
func (c *cycle) canProvision(pvc *v1.PersistentVolumeClaim, n *cluster.NodeInfo) (bool, error) {
	name := volume.GetPersistentVolumeClaimClass(pvc)
	if name == "" {
		return false, fmt.Errorf("no class for claim %s/%s", pvc.Namespace, pvc.Name)
	}
	class, err := c.e.listers.StorageClasses.Get(name)
	if err != nil {
		return false, fmt.Errorf("failed to find storage class %q", name)
	}
	if class.Provisioner == "" || class.Provisioner == volume.NotSupportedProvisioner {
		return false, nil
	}
	return matchTopology(class.AllowedTopologies, n.Node.Labels), nil
}

// matchTopology: no terms match everything; otherwise some term's every
// requirement holds.
func matchTopology(terms []v1.TopologySelectorTerm, nodeLabels map[string]string) bool {
	if len(terms) == 0 {
		return true
	}
	for _, term := range terms {
		ok := true
		for _, req := range term.MatchLabelExpressions {
			if v, has := nodeLabels[req.Key]; !has || !slices.Contains(req.Values, v) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// plan is the volume plan for the chosen node, nil when the pod has no
// claim waiting for its first consumer.
func (c *cycle) plan(node string) (*VolumePlan, error) {
	if c.volumes == nil || len(c.volumes.delayed.claims) == 0 {
		return nil, nil
	}
	n := c.snap.Node(node)
	if n == nil {
		return nil, fmt.Errorf("node %q is gone", node)
	}
	plan, reason, err := c.planVolumes(n)
	if err != nil {
		return nil, err
	}
	if plan == nil {
		return nil, fmt.Errorf("node %s: %s", node, reason)
	}
	return plan, nil
}
