package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/component-helpers/storage/volume"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/placement"
)

// How long a pod's binding waits for its claims to be bound after the
// scheduler chose their volumes (upstream's bindTimeoutSeconds, 600), and
// how often it looks.
const (
	volumeBindTimeout  = 10 * time.Minute
	volumePollInterval = time.Second
)

// volumeAssumptions are the volume choices of bindings in flight
// (upstream's assume caches): the loop writes them between cycles, filters
// read them during one.
type volumeAssumptions struct {
	volumes map[string]types.UID // volume -> pod
	claims  map[string]claimNode // "namespace/name" -> node and pod
}

type claimNode struct {
	node string
	pod  types.UID
}

func newVolumeAssumptions() *volumeAssumptions {
	return &volumeAssumptions{volumes: map[string]types.UID{}, claims: map[string]claimNode{}}
}

func (a *volumeAssumptions) VolumeTaken(pv string) bool { _, ok := a.volumes[pv]; return ok }

func (a *volumeAssumptions) ClaimNode(claim string) (string, bool) {
	c, ok := a.claims[claim]
	return c.node, ok
}

// assume records the plan of pod's binding.
func (a *volumeAssumptions) assume(pod types.UID, plan *placement.VolumePlan) {
	for _, b := range plan.Bindings {
		a.volumes[b.Volume.Name] = pod
	}
	for _, c := range plan.Provision {
		a.claims[c.Namespace+"/"+c.Name] = claimNode{node: plan.Node, pod: pod}
	}
}

// release forgets pod's choices: its binding finished, and the API objects
// now say what happened.
func (a *volumeAssumptions) release(pod types.UID) {
	for pv, p := range a.volumes {
		if p == pod {
			delete(a.volumes, pv)
		}
	}
	for c, cn := range a.claims {
		if cn.pod == pod {
			delete(a.claims, c)
		}
	}
}

// volumeListers read claims and volumes from any goroutine.
type volumeListers struct {
	claims  corelisters.PersistentVolumeClaimLister
	volumes corelisters.PersistentVolumeLister
}

// bindVolumes carries out a volume plan before the pod is bound (upstream
// VolumeBinding's PreBind): each chosen volume gets the claim in its
// claimRef, each claim to provision the selected node; then it waits until
// the PersistentVolume controller (and the provisioner) bound every claim.
// Nothing is undone on failure: the pod is retried against what the
// objects then say.
func (s *Scheduler) bindVolumes(ctx context.Context, pod *v1.Pod, plan *placement.VolumePlan) error {
	written := map[string]string{} // object -> resourceVersion written
	for _, b := range plan.Bindings {
		rv, err := s.bindVolume(ctx, b)
		if err != nil {
			return err
		}
		written["pv/"+b.Volume.Name] = rv
	}
	for _, c := range plan.Provision {
		rv, err := s.selectNode(ctx, c, plan.Node)
		if err != nil {
			return err
		}
		written["pvc/"+c.Namespace+"/"+c.Name] = rv
	}
	deadline := s.clock.Now().Add(volumeBindTimeout)
	for {
		done, err := s.volumesBound(pod, plan, written)
		if err != nil || done {
			return err
		}
		if s.clock.Now().After(deadline) {
			return fmt.Errorf("binding volumes: the claims of pod %s were not bound within %s", podKey(pod), volumeBindTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.clock.After(volumePollInterval):
		}
	}
}

// bindVolume points the volume's claimRef at the claim, conditioned on the
// version the choice was made from.
func (s *Scheduler) bindVolume(ctx context.Context, b placement.VolumeBinding) (string, error) {
	clone, dirty, err := volume.GetBindVolumeToClaim(b.Volume, b.Claim)
	if err != nil || !dirty {
		return b.Volume.ResourceVersion, err
	}
	meta := map[string]any{"resourceVersion": b.Volume.ResourceVersion}
	if v, ok := clone.Annotations[volume.AnnBoundByController]; ok {
		meta["annotations"] = map[string]string{volume.AnnBoundByController: v}
	}
	body, err := json.Marshal(map[string]any{"metadata": meta, "spec": map[string]any{"claimRef": clone.Spec.ClaimRef}})
	if err != nil {
		return "", err
	}
	pv, err := s.client.CoreV1().PersistentVolumes().Patch(ctx, b.Volume.Name, types.MergePatchType, body, metav1.PatchOptions{})
	if err != nil {
		return "", fmt.Errorf("binding volume %s to claim %s/%s: %w", b.Volume.Name, b.Claim.Namespace, b.Claim.Name, err)
	}
	return pv.ResourceVersion, nil
}

// selectNode names the node on a claim for its provisioner.
func (s *Scheduler) selectNode(ctx context.Context, c *v1.PersistentVolumeClaim, node string) (string, error) {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": c.ResourceVersion, "annotations": map[string]string{volume.AnnSelectedNode: node}}})
	if err != nil {
		return "", err
	}
	pvc, err := s.client.CoreV1().PersistentVolumeClaims(c.Namespace).Patch(ctx, c.Name, types.MergePatchType, body, metav1.PatchOptions{})
	if err != nil {
		return "", fmt.Errorf("selecting node %s for claim %s/%s: %w", node, c.Namespace, c.Name, err)
	}
	return pvc.ResourceVersion, nil
}

// volumesBound reports whether every claim of the plan is bound, or why
// the binding failed and the pod must be placed again.
func (s *Scheduler) volumesBound(pod *v1.Pod, plan *placement.VolumePlan, written map[string]string) (bool, error) {
	if cur, err := s.pods.Pods(pod.Namespace).Get(pod.Name); err != nil || cur.UID != pod.UID {
		return false, fmt.Errorf("pod %s does not exist any more", podKey(pod))
	}
	for _, b := range plan.Bindings {
		pv, err := s.volumes.volumes.Get(b.Volume.Name)
		if err != nil {
			return false, fmt.Errorf("failed to check binding: %w", err)
		}
		if older(pv.ResourceVersion, written["pv/"+pv.Name]) {
			return false, nil
		}
		if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID == "" {
			return false, fmt.Errorf("ClaimRef got reset for pv %q", pv.Name)
		}
		if done, err := s.claimBound(b.Claim); err != nil || !done {
			return false, err
		}
	}
	for _, c := range plan.Provision {
		pvc, err := s.volumes.claims.PersistentVolumeClaims(c.Namespace).Get(c.Name)
		if err != nil {
			return false, fmt.Errorf("failed to check provisioning pvc: %w", err)
		}
		if older(pvc.ResourceVersion, written["pvc/"+c.Namespace+"/"+c.Name]) {
			return false, nil
		}
		// A provisioner that cannot serve the node drops the annotation.
		if pvc.Annotations[volume.AnnSelectedNode] != plan.Node {
			return false, fmt.Errorf("provisioning failed for PVC %q", pvc.Name)
		}
		if !fullyBound(pvc) {
			return false, nil
		}
	}
	return true, nil
}

func (s *Scheduler) claimBound(c *v1.PersistentVolumeClaim) (bool, error) {
	pvc, err := s.volumes.claims.PersistentVolumeClaims(c.Namespace).Get(c.Name)
	if err != nil {
		return false, fmt.Errorf("failed to check binding: %w", err)
	}
	return fullyBound(pvc), nil
}

func fullyBound(pvc *v1.PersistentVolumeClaim) bool {
	return pvc.Spec.VolumeName != "" && metav1.HasAnnotation(pvc.ObjectMeta, volume.AnnBindCompleted)
}

// older reports whether resourceVersion a is before b.
func older(a, b string) bool {
	c, err := resourceversion.CompareResourceVersion(a, b)
	return err == nil && c < 0
}
