package persistentvolume

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/component-helpers/storage/ephemeral"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/sdk"
)

var podKind = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}

// syncEphemeral creates the claim of each generic ephemeral volume of a
// pod: named <pod>-<volume>, from the volume's template, owned (and
// garbage-collected) with the pod. A claim of that name that the pod does
// not own is reported, never adopted.
func (c *controller) syncEphemeral(ctx context.Context, key string) (sdk.Result, error) {
	obj, ok, err := c.pods.GetByKey(key)
	if err != nil || !ok {
		return sdk.Result{}, err
	}
	pod := obj.(*v1.Pod)
	if pod.DeletionTimestamp != nil {
		return sdk.Result{}, nil
	}
	for i := range pod.Spec.Volumes {
		vol := &pod.Spec.Volumes[i]
		if vol.Ephemeral == nil {
			continue
		}
		if err := c.ensureEphemeralClaim(ctx, pod, vol); err != nil {
			c.ephemeralEvents.Event(pod, v1.EventTypeWarning, reasonFailedBinding, fmt.Sprintf("ephemeral volume %s: %v", vol.Name, err))
			return sdk.Result{}, fmt.Errorf("pod %s, ephemeral volume %s: %w", key, vol.Name, err)
		}
	}
	return sdk.Result{}, nil
}

func (c *controller) ensureEphemeralClaim(ctx context.Context, pod *v1.Pod, vol *v1.Volume) error {
	name := ephemeral.VolumeClaimName(pod, vol)
	if existing, ok := c.claim(pod.Namespace + "/" + name); ok {
		return ephemeral.VolumeIsForPod(pod, existing)
	}
	tmpl := vol.Ephemeral.VolumeClaimTemplate
	if tmpl == nil {
		return fmt.Errorf("volumeClaimTemplate is missing")
	}
	claim := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: pod.Namespace,
			Labels: tmpl.Labels, Annotations: tmpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: podKind.GroupVersion().String(), Kind: podKind.Kind, Name: pod.Name, UID: pod.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: tmpl.Spec,
	}
	created, err := c.client.CoreV1().PersistentVolumeClaims(pod.Namespace).Create(ctx, claim, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Created meanwhile; the claim's event brings the pod back.
		return nil
	}
	if err != nil {
		return fmt.Errorf("create PVC %s: %w", name, err)
	}
	c.newClaims.wrote(claimKey(created), created)
	return nil
}
