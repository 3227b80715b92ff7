package servicepods

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SlimPod is an informer transform that keeps only what the endpoints
// controllers read of a pod: identity and labels, node, hostname and
// subdomain, container ports, phase, addresses and the Ready condition.
// Everything else (images, env, volumes, most of status) is dropped, so a
// controller caching every pod of the cluster holds a small fraction of it.
// Objects other than pods pass through unchanged.
func SlimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:              pod.Name,
			Namespace:         pod.Namespace,
			UID:               pod.UID,
			ResourceVersion:   pod.ResourceVersion,
			Labels:            pod.Labels,
			DeletionTimestamp: pod.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{
			NodeName:   pod.Spec.NodeName,
			Hostname:   pod.Spec.Hostname,
			Subdomain:  pod.Spec.Subdomain,
			Containers: slimContainers(pod.Spec.Containers, false),
			// Only sidecars (restartPolicy Always) can serve a named port.
			InitContainers: slimContainers(pod.Spec.InitContainers, true),
		},
		Status: corev1.PodStatus{
			Phase:  pod.Status.Phase,
			PodIP:  pod.Status.PodIP,
			PodIPs: pod.Status.PodIPs,
		},
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			slim.Status.Conditions = []corev1.PodCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return slim, nil
}

func slimContainers(cs []corev1.Container, sidecarsOnly bool) []corev1.Container {
	var out []corev1.Container
	for _, c := range cs {
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		if len(c.Ports) == 0 || (sidecarsOnly && !sidecar) {
			continue
		}
		slim := corev1.Container{Name: c.Name, RestartPolicy: c.RestartPolicy}
		for _, p := range c.Ports {
			if p.Name != "" {
				slim.Ports = append(slim.Ports, corev1.ContainerPort{Name: p.Name, ContainerPort: p.ContainerPort, Protocol: p.Protocol})
			}
		}
		if len(slim.Ports) > 0 {
			out = append(out, slim)
		}
	}
	return out
}
