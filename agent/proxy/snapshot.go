package proxy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/keelson/keelson/agent/internal/ruleset"
)

// LabelServiceProxyName on a Service hands it to another proxy
// implementation; kube-proxy and this proxy leave it alone.
const LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"

// ServicePort is one port of one Service as the proxy programs it, for one
// IP family: the addresses it is reached at and the endpoints behind it.
type ServicePort struct {
	Namespace, Name string
	// PortName is the Service port's name, empty for a single unnamed port.
	PortName string
	Protocol v1.Protocol
	Port     int32
	// ClusterIP is the Service's cluster IP of this family.
	ClusterIP netip.Addr
	// NodePort is 0 unless the Service is a NodePort or LoadBalancer one.
	NodePort int32
	// ExternalIPs and LoadBalancerIPs are further addresses the port is
	// reached at from outside, of this family.
	ExternalIPs     []netip.Addr
	LoadBalancerIPs []netip.Addr
	// AffinitySeconds > 0 pins each client IP to one endpoint for that long
	// (sessionAffinity: ClientIP).
	AffinitySeconds int32
	// ExternalLocal and InternalLocal are externalTrafficPolicy: Local and
	// internalTrafficPolicy: Local: only this node's endpoints serve.
	ExternalLocal, InternalLocal bool
	// Endpoints are sorted by address and port, without duplicates.
	Endpoints []Endpoint
}

// Endpoint is one backend of a ServicePort.
type Endpoint struct {
	Addr netip.AddrPort
	// Local is true for endpoints on this node.
	Local bool
	// Ready, Serving and Terminating are the EndpointSlice conditions.
	Ready, Serving, Terminating bool
}

// String names the port the way kube-proxy's comments and logs do:
// namespace/name:port.
func (sp *ServicePort) String() string {
	if sp.PortName == "" {
		return sp.Namespace + "/" + sp.Name
	}
	return sp.Namespace + "/" + sp.Name + ":" + sp.PortName
}

// id is what the port's chain names are derived from: unique per service,
// port name and protocol.
func (sp *ServicePort) id() string {
	return sp.Namespace + "/" + sp.Name + ":" + sp.PortName + "/" + string(sp.Protocol)
}

// HasExternal reports whether the port is reachable from outside the
// cluster network: through a node port, an external IP or a load balancer.
func (sp *ServicePort) HasExternal() bool {
	return sp.NodePort != 0 || len(sp.ExternalIPs) > 0 || len(sp.LoadBalancerIPs) > 0
}

// ClusterEndpoints are the endpoints that serve traffic under the Cluster
// policy: the ready ones or, when there is none, those still serving while
// terminating (so that a rolling update's last pods drain gracefully).
func (sp *ServicePort) ClusterEndpoints() []Endpoint { return usable(sp.Endpoints, false) }

// LocalEndpoints are ClusterEndpoints restricted to this node, chosen
// among this node's endpoints alone.
func (sp *ServicePort) LocalEndpoints() []Endpoint { return usable(sp.Endpoints, true) }

func usable(eps []Endpoint, localOnly bool) []Endpoint {
	var ready, terminating []Endpoint
	for _, ep := range eps {
		if localOnly && !ep.Local {
			continue
		}
		switch {
		case ep.Ready:
			ready = append(ready, ep)
		case ep.Serving && ep.Terminating:
			terminating = append(terminating, ep)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return terminating
}

// Snapshot turns Services and EndpointSlices into the ports the proxy
// programs for one family on node nodeName. Services without a cluster IP
// (headless, ExternalName) are left out; slices of other families or of
// unknown services are ignored. The result is sorted, so equal inputs give
// equal rules. Malformed addresses are skipped and reported in problems.
func Snapshot(services []*v1.Service, epSlices []*discovery.EndpointSlice, nodeName string, family v1.IPFamily) (ports []ServicePort, problems []error) {
	bySvc := map[string][]*discovery.EndpointSlice{}
	for _, s := range epSlices {
		name := s.Labels[discovery.LabelServiceName]
		if name == "" || string(s.AddressType) != string(family) {
			continue
		}
		key := s.Namespace + "/" + name
		bySvc[key] = append(bySvc[key], s)
	}
	for _, svc := range services {
		clusterIP, ok := familyIP(svc.Spec.ClusterIPs, svc.Spec.ClusterIP, family)
		if !ok || svc.Spec.Type == v1.ServiceTypeExternalName {
			continue
		}
		if _, other := svc.Labels[LabelServiceProxyName]; other {
			continue // another proxy implementation serves it
		}
		for i := range svc.Spec.Ports {
			sp, errs := servicePort(svc, &svc.Spec.Ports[i], clusterIP, family)
			problems = append(problems, errs...)
			sp.Endpoints = endpointsFor(bySvc[svc.Namespace+"/"+svc.Name], sp, nodeName)
			ports = append(ports, sp)
		}
	}
	slicesSortPorts(ports)
	return ports, problems
}

func slicesSortPorts(ports []ServicePort) {
	slices.SortFunc(ports, func(a, b ServicePort) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name),
			cmp.Compare(a.PortName, b.PortName), cmp.Compare(a.Protocol, b.Protocol))
	})
}

// familyIP picks the cluster IP of family; a Service created before
// dual-stack may have only spec.clusterIP.
func familyIP(ips []string, single string, family v1.IPFamily) (netip.Addr, bool) {
	if len(ips) == 0 && single != "" {
		ips = []string{single}
	}
	for _, s := range ips {
		if s == v1.ClusterIPNone {
			return netip.Addr{}, false
		}
		if a, err := netip.ParseAddr(s); err == nil && ruleset.IsFamily(a, family) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func servicePort(svc *v1.Service, p *v1.ServicePort, clusterIP netip.Addr, family v1.IPFamily) (ServicePort, []error) {
	sp := ServicePort{
		Namespace: svc.Namespace, Name: svc.Name, PortName: p.Name,
		Protocol: cmp.Or(p.Protocol, v1.ProtocolTCP), Port: p.Port, ClusterIP: clusterIP,
		InternalLocal: svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == v1.ServiceInternalTrafficPolicyLocal,
	}
	if svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer {
		sp.NodePort = p.NodePort
	}
	var problems []error
	for _, s := range svc.Spec.ExternalIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			problems = append(problems, fmt.Errorf("service %s: spec.externalIPs: %q is not an IP address: %w", sp.String(), s, err))
			continue
		}
		if ruleset.IsFamily(a, family) {
			sp.ExternalIPs = append(sp.ExternalIPs, a.Unmap())
		}
	}
	if svc.Spec.Type == v1.ServiceTypeLoadBalancer {
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			// In Proxy mode the load balancer delivers to the node, not to
			// the ingress IP: the node must not capture that address.
			if ing.IP == "" || (ing.IPMode != nil && *ing.IPMode == v1.LoadBalancerIPModeProxy) {
				continue
			}
			a, err := netip.ParseAddr(ing.IP)
			if err != nil {
				problems = append(problems, fmt.Errorf("service %s: status.loadBalancer.ingress: %q is not an IP address: %w", sp.String(), ing.IP, err))
				continue
			}
			if ruleset.IsFamily(a, family) {
				sp.LoadBalancerIPs = append(sp.LoadBalancerIPs, a.Unmap())
			}
		}
	}
	sp.ExternalLocal = sp.HasExternal() && svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal
	if svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
		sp.AffinitySeconds = v1.DefaultClientIPServiceAffinitySeconds
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			sp.AffinitySeconds = *c.ClientIP.TimeoutSeconds
		}
	}
	return sp, problems
}

// endpointsFor collects the endpoints of one service port from its
// slices: the slice port with the same name and protocol gives the target
// port (the endpoints controller resolved named target ports per pod).
func endpointsFor(epSlices []*discovery.EndpointSlice, sp ServicePort, nodeName string) []Endpoint {
	seen := map[netip.AddrPort]bool{}
	var out []Endpoint
	for _, s := range epSlices {
		port, ok := slicePort(s, sp)
		if !ok {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			a, err := netip.ParseAddr(e.Addresses[0])
			if err != nil {
				continue
			}
			ap := netip.AddrPortFrom(a.Unmap(), uint16(port))
			if seen[ap] {
				continue
			}
			seen[ap] = true
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			out = append(out, Endpoint{
				Addr:        ap,
				Local:       e.NodeName != nil && *e.NodeName == nodeName,
				Ready:       ready,
				Serving:     cmpOr(e.Conditions.Serving, ready),
				Terminating: cmpOr(e.Conditions.Terminating, false),
			})
		}
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return a.Addr.Compare(b.Addr) })
	return out
}

func cmpOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

func slicePort(s *discovery.EndpointSlice, sp ServicePort) (int32, bool) {
	for _, p := range s.Ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		proto := v1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if name == sp.PortName && proto == sp.Protocol && p.Port != nil && *p.Port > 0 && *p.Port < 65536 {
			return *p.Port, true
		}
	}
	return 0, false
}

// portString is a port number as iptables wants it.
func portString(p int32) string { return strconv.Itoa(int(p)) }
