package ingress

import (
	"maps"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// managerLabel is the label value (no '/' allowed) naming the plugin as
// the manager of the objects the leader part owns.
const managerLabel = "keelson-ingress"

var managedBy = map[string]string{"app.kubernetes.io/managed-by": managerLabel}

// desiredClass is the IngressClass the plugin creates when it is missing,
// marked default so that an Ingress without a class is served.
func desiredClass() *networkingv1.IngressClass {
	return &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: ClassName, Labels: maps.Clone(managedBy),
			Annotations: map[string]string{annotationDefaultClass: "true"}},
		Spec: networkingv1.IngressClassSpec{Controller: ControllerName},
	}
}

// desiredService is the LoadBalancer Service the cloud provider gives the
// address Ingresses are served on. It has no selector: its endpoints are
// the nodes running the data plane (desiredSlice), and with
// externalTrafficPolicy Local a node forwards the address's traffic to its
// own data plane only, which keeps the client's address for
// X-Forwarded-For and never bounces a request between nodes.
func desiredService(cfg Config) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: ServiceName, Namespace: Namespace, Labels: maps.Clone(managedBy)},
		Spec: v1.ServiceSpec{
			Type:                  v1.ServiceTypeLoadBalancer,
			ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyLocal,
			Ports:                 servicePorts(cfg),
		},
	}
}

func servicePorts(cfg Config) []v1.ServicePort {
	return []v1.ServicePort{
		{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(int32(cfg.HTTPPort))},
		{Name: "https", Protocol: v1.ProtocolTCP, Port: 443, TargetPort: intstr.FromInt32(int32(cfg.HTTPSPort))},
	}
}

// portsMatch compares what the plugin sets of the Service's ports (the
// API server fills in node ports).
func portsMatch(got []v1.ServicePort, cfg Config) bool {
	want := servicePorts(cfg)
	if len(got) != len(want) {
		return false
	}
	for i := range want {
		g := got[i]
		if g.Name != want[i].Name || g.Port != want[i].Port || g.Protocol != want[i].Protocol || g.TargetPort != want[i].TargetPort {
			return false
		}
	}
	return true
}

// desiredSlice lists, as the Service's endpoints, the nodes that run the
// data plane (those matching the node selector), ready when the Node is.
func desiredSlice(cfg Config, nodes []*v1.Node) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: ServiceName, Namespace: Namespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: ServiceName, discoveryv1.LabelManagedBy: managerLabel}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("http"), Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To(int32(cfg.HTTPPort))},
			{Name: ptr.To("https"), Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To(int32(cfg.HTTPSPort))},
		},
	}
	for _, n := range nodes {
		ip, ok := nodeIPv4(n)
		if !ok || !selects(cfg.NodeSelector, n.Labels) {
			continue
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptr.To(n.Name),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(nodeReady(n))}})
	}
	slices.SortFunc(s.Endpoints, func(a, b discoveryv1.Endpoint) int {
		if *a.NodeName < *b.NodeName {
			return -1
		}
		if *a.NodeName > *b.NodeName {
			return 1
		}
		return 0
	})
	return s
}

func nodeIPv4(n *v1.Node) (string, bool) {
	for _, typ := range []v1.NodeAddressType{v1.NodeInternalIP, v1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); a.Type == typ && err == nil && ip.Is4() {
				return ip.String(), true
			}
		}
	}
	return "", false
}

func nodeReady(n *v1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// ingressStatus is what an Ingress's status says: the Service's addresses.
func ingressStatus(svc *v1.Service) networkingv1.IngressLoadBalancerStatus {
	var st networkingv1.IngressLoadBalancerStatus
	if svc == nil {
		return st
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		st.Ingress = append(st.Ingress, networkingv1.IngressLoadBalancerIngress{IP: in.IP, Hostname: in.Hostname})
	}
	return st
}
