package ingress

import (
	"fmt"
	"net/netip"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// attachment is a route attached to one listener: the hostnames it serves
// there ("" any host) and its compiled rules.
type attachment struct {
	hosts []string
	rules []*gwRule
}

// attachRoute attaches r to the listeners its parentRefs name and records
// each parent's status.
func (p *GatewayPlan) attachRoute(w GatewayWorld, r *gatewayv1.HTTPRoute, backends *backendSet) {
	key := types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
	rules, unsupported, resolved := compileRules(w, r, backends)
	for _, ref := range r.Spec.ParentRefs {
		gwKey, ok := parentGateway(r, ref)
		if !ok {
			continue
		}
		st := p.Gateways[gwKey]
		if st == nil {
			continue // not a Gateway of ours: another controller's parent
		}
		acc := unsupported
		if acc.ok {
			acc = p.attachParent(w, st, r, ref, rules)
		}
		p.Parents[key] = append(p.Parents[key], gatewayv1.RouteParentStatus{
			ParentRef:      ref,
			ControllerName: GatewayControllerName,
			Conditions:     []metav1.Condition{acc.meta(r.Generation), resolved.meta(r.Generation)},
		})
	}
}

// parentGateway is the Gateway a parentRef names, if it names one.
func parentGateway(r *gatewayv1.HTTPRoute, ref gatewayv1.ParentReference) (types.NamespacedName, bool) {
	if ref.Group != nil && string(*ref.Group) != gatewayv1.GroupName {
		return types.NamespacedName{}, false
	}
	if ref.Kind != nil && *ref.Kind != "Gateway" {
		return types.NamespacedName{}, false
	}
	ns := r.Namespace
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	return types.NamespacedName{Namespace: ns, Name: string(ref.Name)}, true
}

// attachParent attaches the route to the listeners of st that ref selects
// (by sectionName and port), allow it, and share a hostname with it; it
// returns the parent's Accepted condition.
func (p *GatewayPlan) attachParent(w GatewayWorld, st *gatewayState, r *gatewayv1.HTTPRoute, ref gatewayv1.ParentReference, rules []*gwRule) condition {
	fail := func(reason gatewayv1.RouteConditionReason, msg string) condition {
		return condition{typ: string(gatewayv1.RouteConditionAccepted), reason: string(reason), msg: msg}
	}
	var selected, allowed, attached int
	for _, ls := range st.listeners {
		if (ref.SectionName != nil && *ref.SectionName != ls.l.Name) || (ref.Port != nil && *ref.Port != ls.l.Port) {
			continue
		}
		selected++
		if !ls.attachable() || !kindAllowed(ls) || !namespaceAllowed(w, st.gw, ls.l, r.Namespace) {
			continue
		}
		allowed++
		hosts := intersect(hostnameOf(ls.l.Hostname), r.Spec.Hostnames)
		if len(hosts) == 0 {
			continue
		}
		attached++
		ls.attach(r, attachment{hosts: hosts, rules: rules})
	}
	switch {
	case selected == 0:
		return fail(gatewayv1.RouteReasonNoMatchingParent, fmt.Sprintf("Gateway %s/%s has no listener matching the parentRef's sectionName and port", st.gw.Namespace, st.gw.Name))
	case allowed == 0:
		return fail(gatewayv1.RouteReasonNotAllowedByListeners, "no listener of the parent allows this route (allowedRoutes namespaces and kinds), or none is valid")
	case attached == 0:
		return fail(gatewayv1.RouteReasonNoMatchingListenerHostname, "no hostname of the route matches a hostname of the parent's listeners")
	}
	return condition{typ: string(gatewayv1.RouteConditionAccepted), ok: true, reason: string(gatewayv1.RouteReasonAccepted)}
}

// attach adds a route to the listener, counting each route once.
func (ls *listenerState) attach(r *gatewayv1.HTTPRoute, a attachment) {
	key := r.Namespace + "/" + r.Name
	if ls.attachedBy == nil {
		ls.attachedBy = map[string]bool{}
	}
	if !ls.attachedBy[key] {
		ls.attachedBy[key] = true
		ls.attached++
	}
	ls.routes = append(ls.routes, a)
}

func kindAllowed(ls *listenerState) bool {
	for _, k := range ls.kinds {
		if k.Kind == "HTTPRoute" {
			return true
		}
	}
	return false
}

// namespaceAllowed applies a listener's allowedRoutes.namespaces (default
// Same) to a route's namespace.
func namespaceAllowed(w GatewayWorld, gw *gatewayv1.Gateway, l gatewayv1.Listener, ns string) bool {
	from := gatewayv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	if a := l.AllowedRoutes; a != nil && a.Namespaces != nil {
		if a.Namespaces.From != nil {
			from = *a.Namespaces.From
		}
		sel = a.Namespaces.Selector
	}
	switch from {
	case gatewayv1.NamespacesFromAll:
		return true
	case gatewayv1.NamespacesFromSame:
		return ns == gw.Namespace
	case gatewayv1.NamespacesFromSelector:
		if sel == nil || w.Namespace == nil {
			return false
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		n := w.Namespace(ns)
		return err == nil && n != nil && s.Matches(labels.Set(n.Labels))
	}
	return false
}

// intersect is the hostnames a route serves on a listener of hostname
// listener ("" any): the route's own that the listener's covers, or the
// listener's when it is the narrower; none when they do not meet.
func intersect(listener string, route []gatewayv1.Hostname) []string {
	if len(route) == 0 {
		return []string{listener}
	}
	var out []string
	for _, h := range route {
		r := strings.ToLower(string(h))
		switch {
		case listener == "" || listener == r || wildcardCovers(listener, r):
			out = append(out, r)
		case wildcardCovers(r, listener):
			out = append(out, listener)
		}
	}
	return out
}

// wildcardCovers: a Gateway API wildcard "*.example.com" covers every
// name with one or more labels before ".example.com" (not example.com
// itself), including narrower wildcards.
func wildcardCovers(wildcard, host string) bool {
	suffix, ok := strings.CutPrefix(wildcard, "*")
	if !ok {
		return false
	}
	return len(host) > len(suffix) && strings.HasSuffix(host, suffix)
}

// addPorts adds the usable listeners of a Gateway with an address to the
// served ports.
func (p *GatewayPlan) addPorts(st *gatewayState) {
	if !st.addr.IsValid() || !st.conds[0].ok {
		return
	}
	for _, ls := range st.listeners {
		if !ls.usable() {
			continue
		}
		key := netip.AddrPortFrom(st.addr, uint16(ls.l.Port))
		gp := p.ports[key]
		if gp == nil {
			gp = newGWPort(int32(ls.l.Port), ls.l.Protocol == gatewayv1.HTTPSProtocolType)
			p.ports[key] = gp
		}
		if gp.https != (ls.l.Protocol == gatewayv1.HTTPSProtocolType) {
			continue // a protocol conflict, flagged on the listener
		}
		host := hostnameOf(ls.l.Hostname)
		for _, c := range ls.certs {
			gp.certs = append(gp.certs, hostCert{host: host, cert: c})
		}
		for _, a := range ls.routes {
			for _, h := range a.hosts {
				gp.add(h, a.rules)
			}
		}
	}
}
