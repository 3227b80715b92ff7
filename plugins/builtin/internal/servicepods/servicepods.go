// Package servicepods answers, for the endpoints and endpointslice
// controllers, which pods back a Service and how: whether a pod belongs in
// its endpoints at all, whether it is ready, which address of which family it
// is reached on, which port a named targetPort resolves to in that pod, and
// whether its hostname is published. The rules are upstream Kubernetes'.
package servicepods

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// InEndpoints reports whether pod appears in a Service's endpoints at all
// (ready or not): it has an address, has not finished (Succeeded or Failed),
// and is not terminating unless includeTerminating.
func InEndpoints(pod *corev1.Pod, includeTerminating bool) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	if pod.Status.PodIP == "" && len(pod.Status.PodIPs) == 0 {
		return false
	}
	return includeTerminating || pod.DeletionTimestamp == nil
}

// Ready reports whether the pod's Ready condition is True.
func Ready(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PublishHostname reports whether the pod's hostname is published for svc:
// the pod sets spec.hostname and names svc as its spec.subdomain.
func PublishHostname(pod *corev1.Pod, svc *corev1.Service) bool {
	return pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && pod.Namespace == svc.Namespace
}

// FindPort resolves a service port's targetPort in pod: a number is used as
// it is; a name is looked up among the named ports of the pod's containers
// (and sidecars: init containers that restart always) with the same
// protocol. ok is false when the pod has no such named port, in which case
// the pod is left out of that port's endpoints.
func FindPort(pod *corev1.Pod, sp *corev1.ServicePort) (port int32, ok bool) {
	if sp.TargetPort.Type == intstr.Int {
		return int32(sp.TargetPort.IntValue()), true
	}
	name := sp.TargetPort.StrVal
	for _, c := range pod.Spec.Containers {
		if p, ok := namedPort(c, name, sp.Protocol); ok {
			return p, true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			continue
		}
		if p, ok := namedPort(c, name, sp.Protocol); ok {
			return p, true
		}
	}
	return 0, false
}

func namedPort(c corev1.Container, name string, proto corev1.Protocol) (int32, bool) {
	for _, p := range c.Ports {
		if p.Name == name && p.Protocol == proto {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// IPs returns the pod's addresses of one family (IPv6 when ipv6), each in
// canonical form, in the order the pod reports them.
func IPs(pod *corev1.Pod, ipv6 bool) []string {
	var out []string
	add := func(s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		a = a.Unmap()
		if a.Is6() == ipv6 {
			out = append(out, a.String())
		}
	}
	if len(pod.Status.PodIPs) == 0 {
		add(pod.Status.PodIP)
	}
	for _, ip := range pod.Status.PodIPs {
		add(ip.IP)
	}
	return out
}

// PrimaryFamilyIPv6 reports whether a Service's endpoints use IPv6: its
// first IP family, else its ClusterIP's family, else the pod's.
func PrimaryFamilyIPv6(svc *corev1.Service, pod *corev1.Pod) bool {
	if len(svc.Spec.IPFamilies) > 0 {
		return svc.Spec.IPFamilies[0] == corev1.IPv6Protocol
	}
	if HasClusterIP(svc) {
		return isIPv6(svc.Spec.ClusterIP)
	}
	return isIPv6(pod.Status.PodIP)
}

// HasClusterIP reports whether svc has a virtual IP (it is not headless).
func HasClusterIP(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone
}

func isIPv6(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Unmap().Is6()
}

// Selects reports whether the endpoints controllers manage svc's endpoints:
// it has a selector and is not an ExternalName service.
func Selects(svc *corev1.Service) bool {
	return svc.Spec.Selector != nil && svc.Spec.Type != corev1.ServiceTypeExternalName
}

// ServicesFor returns the keys (namespace/name) of the services in pod's
// namespace whose selector matches pod's labels.
func ServicesFor(services corelisters.ServiceLister, pod *corev1.Pod) ([]string, error) {
	list, err := services.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var keys []string
	set := labels.Set(pod.Labels)
	for _, svc := range list {
		if svc.Spec.Selector == nil {
			continue
		}
		if labels.SelectorFromValidatedSet(svc.Spec.Selector).Matches(set) {
			keys = append(keys, svc.Namespace+"/"+svc.Name)
		}
	}
	return keys, nil
}

// Unchanged reports whether two cached (slimmed by SlimPod) versions of a
// pod are the same but for their resourceVersion: an update that changes
// nothing the endpoints show.
func Unchanged(a, b *corev1.Pod) bool {
	a2, b2 := *a, *b
	a2.ResourceVersion, b2.ResourceVersion = "", ""
	return equality.Semantic.DeepEqual(a2.ObjectMeta, b2.ObjectMeta) &&
		equality.Semantic.DeepEqual(a2.Spec, b2.Spec) &&
		equality.Semantic.DeepEqual(a2.Status, b2.Status)
}

// PodFromEvent returns the pod in an informer event, unwrapping a deletion
// tombstone; nil if obj holds no pod.
func PodFromEvent(obj any) *corev1.Pod {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, _ := obj.(*corev1.Pod)
	return pod
}
