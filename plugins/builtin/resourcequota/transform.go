package resourcequota

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/plugins/sdk"
)

// Transform is the cache transform: managedFields go from everything, and a
// pod keeps only what the pod evaluator and the replenishment filter read
// (phase, deletion, scopes' fields, the resources of its containers in spec
// and status). Images, commands, env, volumes and probes, most of a pod's
// bytes, are dropped.
func Transform(obj any) (any, error) {
	obj, _ = sdk.StripManagedFields(obj)
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Pod{TypeMeta: pod.TypeMeta, ObjectMeta: pod.ObjectMeta}
	// No evaluator or scope reads annotations (last-applied-configuration
	// can be large), labels, owners or finalizers: a pod's quota scopes are
	// its priority class, deadline, QoS and cross-namespace affinity.
	slim.Annotations, slim.Labels, slim.OwnerReferences, slim.Finalizers, slim.GenerateName = nil, nil, nil, nil, ""
	slim.Spec = corev1.PodSpec{
		Containers:            slimContainers(pod.Spec.Containers),
		InitContainers:        slimContainers(pod.Spec.InitContainers),
		Overhead:              pod.Spec.Overhead,
		Resources:             pod.Spec.Resources,
		ActiveDeadlineSeconds: pod.Spec.ActiveDeadlineSeconds,
		PriorityClassName:     pod.Spec.PriorityClassName,
		ResourceClaims:        pod.Spec.ResourceClaims,
		NodeName:              pod.Spec.NodeName,
	}
	if a := pod.Spec.Affinity; a != nil && (a.PodAffinity != nil || a.PodAntiAffinity != nil) {
		slim.Spec.Affinity = &corev1.Affinity{PodAffinity: a.PodAffinity, PodAntiAffinity: a.PodAntiAffinity}
	}
	slim.Status = corev1.PodStatus{
		Phase:                                pod.Status.Phase,
		Conditions:                           pod.Status.Conditions,
		ContainerStatuses:                    slimStatuses(pod.Status.ContainerStatuses),
		InitContainerStatuses:                slimStatuses(pod.Status.InitContainerStatuses),
		Resources:                            pod.Status.Resources,
		AllocatedResources:                   pod.Status.AllocatedResources,
		ResourceClaimStatuses:                pod.Status.ResourceClaimStatuses,
		ExtendedResourceClaimStatus:          pod.Status.ExtendedResourceClaimStatus,
		NodeAllocatableResourceClaimStatuses: pod.Status.NodeAllocatableResourceClaimStatuses,
	}
	return slim, nil
}

func slimContainers(cs []corev1.Container) []corev1.Container {
	if cs == nil {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Resources: c.Resources, RestartPolicy: c.RestartPolicy, ResizePolicy: c.ResizePolicy}
	}
	return out
}

func slimStatuses(ss []corev1.ContainerStatus) []corev1.ContainerStatus {
	if ss == nil {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(ss))
	for i, s := range ss {
		out[i] = corev1.ContainerStatus{Name: s.Name, Resources: s.Resources, AllocatedResources: s.AllocatedResources}
	}
	return out
}
