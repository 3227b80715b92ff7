package main

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// ours reports whether an Ingress names one of our classes.
func ours(ing *networkingv1.Ingress, classes []*networkingv1.IngressClass) bool {
	if ing.Spec.IngressClassName == nil {
		return false
	}
	for _, c := range classes {
		if c.Name == *ing.Spec.IngressClassName && c.Spec.Controller == ControllerName {
			return true
		}
	}
	return false
}

// route is one Ingress path and where it sends requests.
type route struct {
	host, path string
	exact      bool
	endpoints  []string // host:port of the ready endpoints
	next       *atomic.Uint64
}

// table is an immutable routing table, replaced whole on every change.
type table struct{ routes []route }

// world is what a table is built from.
type world struct {
	ingresses []*networkingv1.Ingress // ours only
	service   func(ns, name string) *v1.Service
	slices    func(ns, service string) []*discoveryv1.EndpointSlice
}

func build(w world) *table {
	t := &table{}
	for _, ing := range w.ingresses {
		for _, r := range ing.Spec.Rules {
			if r.HTTP == nil {
				continue
			}
			for _, p := range r.HTTP.Paths {
				exact := p.PathType != nil && *p.PathType == networkingv1.PathTypeExact
				t.routes = append(t.routes, route{host: r.Host, path: p.Path, exact: exact,
					endpoints: endpoints(w, ing.Namespace, p.Backend), next: new(atomic.Uint64)})
			}
		}
	}
	// Longest path first, Exact before Prefix on a tie: the first match wins.
	slices.SortStableFunc(t.routes, func(a, b route) int {
		if len(a.path) != len(b.path) {
			return len(b.path) - len(a.path)
		}
		if a.exact != b.exact && a.exact {
			return -1
		}
		if a.exact != b.exact {
			return 1
		}
		return 0
	})
	return t
}

// lookup finds the route of a request; a rule without a host matches any.
func (t *table) lookup(host, path string) (route, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	for _, r := range t.routes {
		if r.host != "" && !strings.EqualFold(r.host, host) {
			continue
		}
		if r.exact && path == r.path || !r.exact && prefixMatches(r.path, path) {
			return r, true
		}
	}
	return route{}, false
}

// prefixMatches matches element-wise on '/': /foo matches /foo and
// /foo/bar, never /foobar.
func prefixMatches(prefix, path string) bool {
	prefix = strings.TrimRight(prefix, "/")
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// endpoints are the ready endpoints of the Service port a backend names.
func endpoints(w world, ns string, b networkingv1.IngressBackend) []string {
	if b.Service == nil {
		return nil
	}
	svc := w.service(ns, b.Service.Name)
	if svc == nil {
		return nil
	}
	portName, found := "", false
	for _, sp := range svc.Spec.Ports {
		if sp.Name == b.Service.Port.Name && sp.Name != "" || sp.Port == b.Service.Port.Number {
			portName, found = sp.Name, true
		}
	}
	if !found {
		return nil
	}
	var out []string
	for _, s := range w.slices(ns, svc.Name) {
		for _, p := range s.Ports {
			if p.Port == nil || (p.Name != nil && *p.Name != portName) || (p.Name == nil && portName != "") {
				continue
			}
			for _, ep := range s.Endpoints {
				if (ep.Conditions.Ready == nil || *ep.Conditions.Ready) && len(ep.Addresses) > 0 {
					out = append(out, net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(*p.Port))))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}
