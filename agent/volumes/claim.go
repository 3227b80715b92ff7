package volumes

import (
	"context"
	"errors"
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/storage/ephemeral"
	"k8s.io/component-helpers/storage/volume"
)

// ErrNodeAffinity is wrapped by the error for a volume pinned to other
// nodes: the pod cannot run here until the volume or the pod changes.
var ErrNodeAffinity = errors.New("volume node affinity conflict")

// claimVolume sets up a persistentVolumeClaim or generic ephemeral volume:
// the claim must be bound to a volume this node may use, a hostPath
// (used in place, as kubelet does) or a local volume (bind-mounted into
// the pod's directory, with fsGroup ownership).
func (m *Manager) claimVolume(ctx context.Context, pod *v1.Pod, vol *v1.Volume, podDir string, env Env, gid int) (Volume, error) {
	name, readOnly := "", false
	switch {
	case vol.PersistentVolumeClaim != nil:
		name, readOnly = vol.PersistentVolumeClaim.ClaimName, vol.PersistentVolumeClaim.ReadOnly
	default:
		name = ephemeral.VolumeClaimName(pod, vol)
	}
	pvc, err := m.client.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Volume{}, fmt.Errorf("persistentvolumeclaim %q not found", name)
	}
	if err != nil {
		return Volume{}, fmt.Errorf("reading persistentvolumeclaim %q: %w", name, err)
	}
	if vol.Ephemeral != nil {
		if err := ephemeral.VolumeIsForPod(pod, pvc); err != nil {
			return Volume{}, err
		}
	}
	pv, err := m.boundVolume(ctx, pvc)
	if err != nil {
		return Volume{}, err
	}
	if err := checkNodeAffinity(pv, env.NodeName, env.NodeLabels); err != nil {
		return Volume{}, err
	}
	if pv.Spec.VolumeMode != nil && *pv.Spec.VolumeMode == v1.PersistentVolumeBlock {
		return Volume{}, fmt.Errorf("persistentvolume %q is a block device (volumeMode Block), which this agent does not attach", pv.Name)
	}
	switch {
	case pv.Spec.HostPath != nil:
		v, err := hostPath(pv.Spec.HostPath)
		v.ReadOnly = readOnly
		return v, err
	case pv.Spec.Local != nil:
		return m.localVolume(pod, ClaimVolume{Name: vol.Name, Namespace: pod.Namespace, Claim: name}, pv, podDir, readOnly, gid)
	}
	return Volume{}, fmt.Errorf("persistentvolume %q is of a type this agent cannot mount: it mounts hostPath and local volumes", pv.Name)
}

// boundVolume returns the volume a claim is bound to, or why the pod must
// wait (the claim is not bound yet) or cannot use it.
func (m *Manager) boundVolume(ctx context.Context, pvc *v1.PersistentVolumeClaim) (*v1.PersistentVolume, error) {
	switch {
	case pvc.DeletionTimestamp != nil:
		return nil, fmt.Errorf("persistentvolumeclaim %q is being deleted", pvc.Name)
	case pvc.Spec.VolumeName == "" || pvc.Status.Phase != v1.ClaimBound:
		return nil, fmt.Errorf("persistentvolumeclaim %q is not bound (phase %s): waiting for its volume", pvc.Name, pvc.Status.Phase)
	}
	pv, err := m.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading persistentvolume %q of claim %q: %w", pvc.Spec.VolumeName, pvc.Name, err)
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.UID != pvc.UID {
		return nil, fmt.Errorf("persistentvolume %q is not bound to claim %q", pv.Name, pvc.Name)
	}
	return pv, nil
}

// checkNodeAffinity refuses a volume whose required node affinity does not
// select this node (matched on the node's labels, as the scheduler does).
func checkNodeAffinity(pv *v1.PersistentVolume, node string, labels map[string]string) error {
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return nil
	}
	if err := volume.CheckNodeAffinity(pv, labels); err != nil {
		return fmt.Errorf("%w: persistentvolume %q is pinned by its nodeAffinity to %s, and this node %q is not one of them: "+
			"the pod must run where the volume is (delete the pod so it is scheduled there, or release the volume)",
			ErrNodeAffinity, pv.Name, describeSelector(pv.Spec.NodeAffinity.Required), node)
	}
	return nil
}

// describeSelector writes a node selector the way a user reads it.
func describeSelector(sel *v1.NodeSelector) string {
	var terms []string
	for _, t := range sel.NodeSelectorTerms {
		var reqs []string
		for _, r := range t.MatchExpressions {
			reqs = append(reqs, fmt.Sprintf("%s %s [%s]", r.Key, r.Operator, strings.Join(r.Values, ",")))
		}
		terms = append(terms, strings.Join(reqs, " and "))
	}
	return "nodes with " + strings.Join(terms, " or ")
}
