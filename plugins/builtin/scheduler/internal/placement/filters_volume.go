package placement

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

// AnnBindCompleted is set by the PersistentVolume controller once a claim
// is fully bound; a volumeName alone is a binding in progress.
const AnnBindCompleted = "pv.kubernetes.io/bind-completed"

// topologyLabels are the PersistentVolume labels that pin a volume to
// zones or regions.
var topologyLabels = []string{
	v1.LabelFailureDomainBetaZone,
	v1.LabelFailureDomainBetaRegion,
	v1.LabelTopologyZone,
	v1.LabelTopologyRegion,
}

// volumeState is what the volume filters need of the pod's claims.
type volumeState struct {
	// affinities are the node affinities of the bound volumes.
	affinities []*nodeaffinity.NodeSelector
	// zones are the zone and region sets the bound volumes live in.
	zones []pvTopology
	// delayed are the claims that wait for their first consumer: they get
	// their volumes on the node the pod is placed on.
	delayed delayedClaims
}

type pvTopology struct {
	key    string
	values sets.Set[string]
}

// preFilterVolumes reads the pod's claims. Like upstream, a missing or
// deleted claim, a lost one and an unbound claim with immediate binding
// reject the pod outright; for a bound claim it records where its volume
// can be reached, and it collects the claims waiting for their first
// consumer, which the filter binds per node.
func (c *cycle) preFilterVolumes() (Status, error) {
	var s volumeState
	var unboundImmediate bool
	for i := range c.pod.Spec.Volumes {
		vol := &c.pod.Spec.Volumes[i]
		pvc, st, err := c.claimOf(vol)
		if err != nil || !st.OK() || pvc == nil {
			return st, err
		}
		if pvc.Spec.VolumeName != "" && metav1.HasAnnotation(pvc.ObjectMeta, AnnBindCompleted) {
			if st, err := c.boundVolume(pvc, &s); err != nil || !st.OK() {
				return st, err
			}
			continue
		}
		isDelayed, err := c.e.delayedBinding(pvc)
		if err != nil {
			return Status{}, err
		}
		if isDelayed && pvc.Spec.VolumeName == "" {
			if err := c.addDelayed(&s, pvc); err != nil {
				return Status{}, err
			}
		} else {
			unboundImmediate = true
		}
	}
	if unboundImmediate {
		return rejectHard(FilterVolumeBinding, reasonUnboundImmediate), nil
	}
	if len(s.affinities) > 0 || len(s.zones) > 0 || len(s.delayed.claims) > 0 {
		c.volumes = &s
	}
	return Status{}, nil
}

// claimOf returns the claim a volume uses, nil for other volume types.
func (c *cycle) claimOf(vol *v1.Volume) (*v1.PersistentVolumeClaim, Status, error) {
	var name string
	ephemeral := false
	switch {
	case vol.PersistentVolumeClaim != nil:
		name = vol.PersistentVolumeClaim.ClaimName
	case vol.Ephemeral != nil:
		name = c.pod.Name + "-" + vol.Name
		ephemeral = true
	default:
		return nil, Status{}, nil
	}
	if c.e.listers.PVCs == nil {
		return nil, Status{}, fmt.Errorf("no PersistentVolumeClaim lister for claim %q", name)
	}
	pvc, err := c.e.listers.PVCs.PersistentVolumeClaims(c.pod.Namespace).Get(name)
	switch {
	case apierrors.IsNotFound(err) && ephemeral:
		return nil, rejectHard(FilterVolumeBinding, fmt.Sprintf("waiting for ephemeral volume controller to create the persistentvolumeclaim %q", name)), nil
	case apierrors.IsNotFound(err):
		return nil, rejectHard(FilterVolumeBinding, err.Error()), nil
	case err != nil:
		return nil, Status{}, fmt.Errorf("reading PersistentVolumeClaim %s/%s: %w", c.pod.Namespace, name, err)
	case pvc.Status.Phase == v1.ClaimLost:
		return nil, rejectHard(FilterVolumeBinding, fmt.Sprintf("persistentvolumeclaim %q bound to non-existent persistentvolume %q", pvc.Name, pvc.Spec.VolumeName)), nil
	case pvc.DeletionTimestamp != nil:
		return nil, rejectHard(FilterVolumeBinding, fmt.Sprintf("persistentvolumeclaim %q is being deleted", pvc.Name)), nil
	}
	if ephemeral && !metav1.IsControlledBy(pvc, c.pod) {
		return nil, rejectHard(FilterVolumeBinding, fmt.Sprintf("PVC %s/%s was not created for pod %s/%s (pod is not owner)", pvc.Namespace, pvc.Name, c.pod.Namespace, c.pod.Name)), nil
	}
	return pvc, Status{}, nil
}

// boundVolume records the node affinity and zones of a bound claim's
// volume.
func (c *cycle) boundVolume(pvc *v1.PersistentVolumeClaim, s *volumeState) (Status, error) {
	pvName := pvc.Spec.VolumeName
	if c.e.listers.PVs == nil {
		return Status{}, fmt.Errorf("no PersistentVolume lister for volume %q", pvName)
	}
	pv, err := c.e.listers.PVs.Get(pvName)
	if apierrors.IsNotFound(err) {
		return rejectHard(FilterVolumeZone, err.Error()), nil
	}
	if err != nil {
		return Status{}, fmt.Errorf("reading PersistentVolume %s: %w", pvName, err)
	}
	if na := pv.Spec.NodeAffinity; na != nil && na.Required != nil {
		sel, err := nodeaffinity.NewNodeSelector(na.Required)
		if err != nil {
			return Status{}, fmt.Errorf("PersistentVolume %s: parsing nodeAffinity: %w", pvName, err)
		}
		if st := c.lostLocalVolume(pvc, pv, sel); !st.OK() {
			return st, nil
		}
		s.affinities = append(s.affinities, sel)
	}
	for _, key := range topologyLabels {
		if v, ok := pv.Labels[key]; ok {
			s.zones = append(s.zones, pvTopology{key: key, values: sets.New(strings.Split(v, "__")...)})
		}
	}
	return Status{}, nil
}

// delayedBinding reports whether a claim's storage class binds on first
// consumer.
func (e *Engine) delayedBinding(pvc *v1.PersistentVolumeClaim) (bool, error) {
	class := claimClass(pvc)
	if class == "" {
		return false, nil
	}
	if e.listers.StorageClasses == nil {
		return false, fmt.Errorf("no StorageClass lister for class %q", class)
	}
	sc, err := e.listers.StorageClasses.Get(class)
	if err != nil {
		return false, fmt.Errorf("reading StorageClass %q of claim %s/%s: %w", class, pvc.Namespace, pvc.Name, err)
	}
	if sc.VolumeBindingMode == nil {
		return false, fmt.Errorf("VolumeBindingMode not set for StorageClass %q", class)
	}
	return *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer, nil
}

// claimClass is the claim's storage class, from the field or the beta
// annotation older claims carry.
func claimClass(pvc *v1.PersistentVolumeClaim) string {
	if c, ok := pvc.Annotations[v1.BetaStorageClassAnnotation]; ok {
		return c
	}
	if pvc.Spec.StorageClassName != nil {
		return *pvc.Spec.StorageClassName
	}
	return ""
}

// filterVolumeBinding: every bound volume's node affinity admits the node
// (matched on labels, as upstream), and every claim waiting for its first
// consumer can get a volume there.
func (c *cycle) filterVolumeBinding(n *cluster.NodeInfo) Status {
	if c.volumes == nil {
		return Status{}
	}
	byLabels := &v1.Node{ObjectMeta: metav1.ObjectMeta{Labels: n.Node.Labels}}
	for _, sel := range c.volumes.affinities {
		if !sel.Match(byLabels) {
			return rejectHard(FilterVolumeBinding, reasonPVNodeAffinity)
		}
	}
	if len(c.volumes.delayed.claims) == 0 {
		return Status{}
	}
	if _, reason, err := c.planVolumes(n); err != nil || reason != "" {
		if err != nil {
			reason = err.Error()
		}
		return rejectHard(FilterVolumeBinding, reason)
	}
	return Status{}
}

// filterVolumeZone: a node with zone or region labels must be in the zones
// and regions of the pod's bound volumes. A node without any such label is
// not constrained.
func (c *cycle) filterVolumeZone(n *cluster.NodeInfo) Status {
	if c.volumes == nil || len(c.volumes.zones) == 0 {
		return Status{}
	}
	labels := n.Node.Labels
	constrained := false
	for _, key := range topologyLabels {
		if _, ok := labels[key]; ok {
			constrained = true
			break
		}
	}
	if !constrained {
		return Status{}
	}
	for _, z := range c.volumes.zones {
		v, ok := labels[z.key]
		if !ok {
			v, ok = labels[gaLabel(z.key)]
		}
		if !ok || !z.values.Has(v) {
			return rejectHard(FilterVolumeZone, reasonVolumeZone)
		}
	}
	return Status{}
}

// gaLabel maps a beta zone or region label to its GA name.
func gaLabel(key string) string {
	switch key {
	case v1.LabelFailureDomainBetaZone:
		return v1.LabelTopologyZone
	case v1.LabelFailureDomainBetaRegion:
		return v1.LabelTopologyRegion
	}
	return key
}
