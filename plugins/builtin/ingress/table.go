package ingress

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Backend is where matching requests go: the ready endpoints of one
// Service port, tried round robin.
type Backend struct {
	// Name is namespace/service:port, for errors and logs.
	Name string
	// Endpoints are host:port of the ready endpoints.
	Endpoints []string
	// H2C speaks HTTP/2 without TLS to the endpoints (the Service port's
	// appProtocol is kubernetes.io/h2c), which gRPC backends need.
	H2C bool
	// Problem says why a backend has no endpoints, when the reason is a
	// configuration error rather than no ready pod.
	Problem string

	next atomic.Uint64
}

// Route is one Ingress rule's path (or an Ingress's default backend) as
// served: what a request matched, and the unit the data plane's metrics
// are labelled by, so their number is bounded by the rules, never by the
// requests' paths.
type Route struct {
	// Namespace and Ingress name the Ingress the rule is in.
	Namespace, Ingress string
	// Host is the rule's host ("*" for a rule without one, and for the
	// default backend); Path is the rule's path ("*": the default backend).
	Host, Path string
	Backend    *Backend
	// service is the backend's Service and port, as the rule names them.
	service string
	obs     *routeObservers // nil: no metrics
}

// Table is one immutable routing configuration: the data plane serves
// from the latest one and replaces it whole, so a request sees either
// the old or the new configuration, never a mix.
type Table struct {
	hosts        hostRoutes
	defaultRoute *Route
	// gateways are the Gateway listener ports, by Gateway address and
	// listener port.
	gateways map[netip.AddrPort]*gwPort
	// Gateways is the compiled Gateway API configuration (nil without).
	Gateways *GatewayPlan
	certs    certSet
	// routes are all the table's routes, for the metrics.
	routes []*Route
	// Problems are the configuration errors met while building.
	Problems []string
}

// Route returns the route of a request's Host header and path, nil when
// nothing matches and there is no default backend.
func (t *Table) Route(host, path string) *Route {
	if p := t.hosts.lookup(requestHost(host)); p != nil {
		if r := p.match(path); r != nil {
			return r
		}
	}
	return t.defaultRoute
}

// World is what a table is built from: the Ingresses the plugin serves and
// lookups into the Services, EndpointSlices and certificates.
type World struct {
	Ingresses []*networkingv1.Ingress
	Service   func(namespace, name string) *v1.Service
	// Slices returns the EndpointSlices of a Service.
	Slices func(namespace, service string) []*discoveryv1.EndpointSlice
	// Cert returns the parsed certificate of a kubernetes.io/tls Secret, or
	// an error saying why there is none.
	Cert func(namespace, secret string) (*tls.Certificate, error)
	// Gateway is the Gateway API part (nil: none).
	Gateway *GatewayWorld
}

// Build makes the table for w. Of conflicting rules (the same host, path
// and type, or several default backends) the oldest Ingress wins, as
// upstream controllers do.
func Build(w World) *Table {
	t := &Table{hosts: hostRoutes{exact: map[string]*pathRoutes{}, wildcard: map[string]*pathRoutes{}}, certs: newCertSet()}
	ings := slices.Clone(w.Ingresses)
	slices.SortFunc(ings, func(a, b *networkingv1.Ingress) int {
		if c := a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	backends := newBackendSet(w)
	route := func(ing *networkingv1.Ingress, host, path string, ib networkingv1.IngressBackend) *Route {
		return &Route{Namespace: ing.Namespace, Ingress: ing.Name, Host: cmp.Or(host, "*"), Path: path,
			Backend: backends.get(ing.Namespace, ib), service: backendKey(ib)}
	}
	for _, ing := range ings {
		if d := ing.Spec.DefaultBackend; d != nil && t.defaultRoute == nil {
			t.defaultRoute = route(ing, "", "*", *d)
			t.routes = append(t.routes, t.defaultRoute)
		}
		for _, r := range ing.Spec.Rules {
			if r.HTTP == nil {
				continue
			}
			routes := t.hosts.forRule(r.Host)
			for _, p := range r.HTTP.Paths {
				exact := p.PathType != nil && *p.PathType == networkingv1.PathTypeExact
				if rt := route(ing, r.Host, p.Path, p.Backend); routes.add(p.Path, exact, rt) {
					t.routes = append(t.routes, rt)
				}
			}
		}
		t.addTLS(w, ing)
	}
	for _, p := range t.hosts.exact {
		p.seal()
	}
	for _, p := range t.hosts.wildcard {
		p.seal()
	}
	if t.hosts.any != nil {
		t.hosts.any.seal()
	}
	if w.Gateway != nil {
		t.addGateways(*w.Gateway, backends, w.Cert)
	}
	t.Problems = append(t.Problems, backends.problems...)
	return t
}

// addGateways compiles the Gateway API part into the table.
func (t *Table) addGateways(gw GatewayWorld, backends *backendSet, cert func(string, string) (*tls.Certificate, error)) {
	t.Gateways = CompileGateways(gw, backends, cert)
	t.gateways = t.Gateways.ports
	seen := map[*Route]bool{}
	for _, gp := range t.gateways {
		for _, v := range gp.vhosts() {
			for _, r := range v.rules {
				if !seen[r.route] {
					seen[r.route] = true
					t.routes = append(t.routes, r.route)
				}
			}
		}
	}
}

func (t *Table) addTLS(w World, ing *networkingv1.Ingress) {
	for _, tl := range ing.Spec.TLS {
		if tl.SecretName == "" || w.Cert == nil {
			continue
		}
		cert, err := w.Cert(ing.Namespace, tl.SecretName)
		if err != nil {
			t.Problems = append(t.Problems, fmt.Sprintf("ingress %s/%s: tls secret %s: %v", ing.Namespace, ing.Name, tl.SecretName, err))
			continue
		}
		t.certs.add(tl.Hosts, cert)
	}
}

func backendKey(ib networkingv1.IngressBackend) string {
	if s := ib.Service; s != nil {
		if s.Port.Name != "" {
			return s.Name + ":" + s.Port.Name
		}
		return s.Name + ":" + strconv.Itoa(int(s.Port.Number))
	}
	if r := ib.Resource; r != nil {
		return "resource:" + r.Kind + "/" + r.Name
	}
	return "none"
}

// resolve finds the Service port a backend names and its ready endpoints;
// traffic goes to the pods directly, not through the ClusterIP.
func resolve(w World, ns string, ib networkingv1.IngressBackend) *Backend {
	b := &Backend{Name: ns + "/" + backendKey(ib)}
	if ib.Service == nil {
		b.Problem = fmt.Sprintf("backend %s: only Service backends are supported", b.Name)
		return b
	}
	svc := w.Service(ns, ib.Service.Name)
	if svc == nil {
		b.Problem = fmt.Sprintf("backend %s: Service %s/%s not found", b.Name, ns, ib.Service.Name)
		return b
	}
	sp, ok := servicePort(svc, ib.Service.Port)
	if !ok {
		b.Problem = fmt.Sprintf("backend %s: Service %s/%s has no such port", b.Name, ns, svc.Name)
		return b
	}
	b.H2C = sp.AppProtocol != nil && (*sp.AppProtocol == "kubernetes.io/h2c" || *sp.AppProtocol == "h2c")
	b.Endpoints = readyEndpoints(w.Slices(ns, svc.Name), sp.Name)
	return b
}

func servicePort(svc *v1.Service, p networkingv1.ServiceBackendPort) (v1.ServicePort, bool) {
	for _, sp := range svc.Spec.Ports {
		if sp.Protocol != "" && sp.Protocol != v1.ProtocolTCP {
			continue
		}
		if (p.Name != "" && sp.Name == p.Name) || (p.Name == "" && sp.Port == p.Number) {
			return sp, true
		}
	}
	return v1.ServicePort{}, false
}

// readyEndpoints are host:port of the ready endpoints of the slices'
// port called portName, each once, sorted.
func readyEndpoints(sl []*discoveryv1.EndpointSlice, portName string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range sl {
		port, ok := slicePort(s, portName)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready || len(ep.Addresses) == 0 {
				continue
			}
			a := net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(port)))
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	slices.Sort(out)
	return out
}

func slicePort(s *discoveryv1.EndpointSlice, name string) (int32, bool) {
	for _, p := range s.Ports {
		pn := ""
		if p.Name != nil {
			pn = *p.Name
		}
		if pn == name && p.Port != nil && (p.Protocol == nil || *p.Protocol == v1.ProtocolTCP) {
			return *p.Port, true
		}
	}
	return 0, false
}
