package servicenet

import (
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	networking "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// trim keeps in the caches only what the components read: every node
// caches every Service, EndpointSlice and Pod of the cluster, so bytes
// saved here are saved on every node.
func trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *v1.Pod:
		// Peers of NetworkPolicies: labels, node, addresses, named ports.
		p := &v1.Pod{
			ObjectMeta: slimMeta(o.ObjectMeta, true),
			Spec:       v1.PodSpec{NodeName: o.Spec.NodeName, HostNetwork: o.Spec.HostNetwork},
			Status:     v1.PodStatus{Phase: o.Status.Phase, PodIP: o.Status.PodIP, PodIPs: o.Status.PodIPs},
		}
		for _, c := range o.Spec.Containers {
			if len(c.Ports) > 0 {
				p.Spec.Containers = append(p.Spec.Containers, v1.Container{Name: c.Name, Ports: c.Ports})
			}
		}
		return p, nil
	case *v1.Node:
		return &v1.Node{
			ObjectMeta: slimMeta(o.ObjectMeta, false),
			Spec:       v1.NodeSpec{PodCIDR: o.Spec.PodCIDR, PodCIDRs: o.Spec.PodCIDRs},
			Status:     v1.NodeStatus{Addresses: o.Status.Addresses},
		}, nil
	case *v1.Service:
		s := *o
		s.ObjectMeta = slimMeta(o.ObjectMeta, true)
		return &s, nil
	case *discovery.EndpointSlice:
		s := *o
		s.ObjectMeta = slimMeta(o.ObjectMeta, true)
		return &s, nil
	case *v1.Namespace:
		return &v1.Namespace{ObjectMeta: slimMeta(o.ObjectMeta, true)}, nil
	case *networking.NetworkPolicy:
		p := *o
		p.ObjectMeta = slimMeta(o.ObjectMeta, false)
		return &p, nil
	}
	return obj, nil
}

// slimMeta keeps identity, version and (if asked) labels; annotations and
// managed fields are what makes objects large and nothing here reads them.
func slimMeta(m metav1.ObjectMeta, labels bool) metav1.ObjectMeta {
	out := metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		DeletionTimestamp: m.DeletionTimestamp}
	if labels {
		out.Labels = m.Labels
	}
	return out
}
