package ingress

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The Gateway API names the plugin owns.
const (
	// GatewayClassName is the GatewayClass the plugin creates and serves.
	GatewayClassName = "keelson"
	// GatewayControllerName is spec.controllerName of the GatewayClasses
	// the plugin serves.
	GatewayControllerName gatewayv1.GatewayController = "keelson.io/gateway-controller"
)

// GatewayWorld is what the Gateway API part of a table is built from: the
// Gateway API objects of the cluster and lookups into the rest.
type GatewayWorld struct {
	Classes  []*gatewayv1.GatewayClass
	Gateways []*gatewayv1.Gateway
	Routes   []*gatewayv1.HTTPRoute
	Grants   []*gatewayv1.ReferenceGrant
	// Namespace returns a namespace (for allowedRoutes selectors), nil when
	// it does not exist.
	Namespace func(name string) *v1.Namespace
	// Address is the IP a Gateway is served on, invalid while it has none.
	Address func(gw *gatewayv1.Gateway) netip.Addr
}

// condition is one status condition as the plugin decides it; the time of
// a transition is the writer's business.
type condition struct {
	typ    string
	ok     bool
	reason string
	msg    string
}

func (c condition) meta(gen int64) metav1.Condition {
	st := metav1.ConditionFalse
	if c.ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: c.typ, Status: st, Reason: c.reason, Message: c.msg, ObservedGeneration: gen}
}

// GatewayPlan is the compiled Gateway API configuration: what every
// Gateway, listener and route parent's status says, and what is served.
type GatewayPlan struct {
	Gateways map[types.NamespacedName]*gatewayState
	// Parents are the status.parents entries of ours, by HTTPRoute.
	Parents map[types.NamespacedName][]gatewayv1.RouteParentStatus
	// ports are the served listener ports, by Gateway address and port.
	ports map[netip.AddrPort]*gwPort
}

// gatewayState is one Gateway of ours as compiled.
type gatewayState struct {
	gw        *gatewayv1.Gateway
	addr      netip.Addr
	conds     []condition
	listeners []*listenerState
}

// listenerState is one listener: whether routes may attach, its status and
// its certificates.
type listenerState struct {
	l          gatewayv1.Listener
	kinds      []gatewayv1.RouteGroupKind
	accepted   condition
	resolved   condition
	conflicted condition
	attached   int32
	attachedBy map[string]bool // routes counted in attached
	routes     []attachment
	certs      []*tls.Certificate
}

// usable: routes attach to the listener and it is served.
func (ls *listenerState) usable() bool {
	return ls.attachable() && ls.resolved.ok
}

// attachable: routes attach to (and are counted on) an accepted listener
// without conflicts even while its references are unresolved; it serves
// them once it is usable.
func (ls *listenerState) attachable() bool {
	return ls.accepted.ok && !ls.conflicted.ok
}

// OursClass reports whether a GatewayClass belongs to the plugin.
func OursClass(c *gatewayv1.GatewayClass) bool { return c.Spec.ControllerName == GatewayControllerName }

// ourGateways are the Gateways whose class is ours, oldest first.
func ourGateways(w GatewayWorld) []*gatewayv1.Gateway {
	classes := map[string]bool{}
	for _, c := range w.Classes {
		classes[c.Name] = OursClass(c)
	}
	var out []*gatewayv1.Gateway
	for _, gw := range w.Gateways {
		if classes[string(gw.Spec.GatewayClassName)] {
			out = append(out, gw)
		}
	}
	slices.SortFunc(out, func(a, b *gatewayv1.Gateway) int { return olderFirst(a.ObjectMeta, b.ObjectMeta) })
	return out
}

func olderFirst(a, b metav1.ObjectMeta) int {
	if c := a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// CompileGateways compiles the Gateways of our classes and the HTTPRoutes
// attached to them. cert loads a listener's certificate (nil: certificates
// are not loaded, only checked through the Secret lookups in w). It is
// pure: the leader calls it for the statuses, every node for serving.
func CompileGateways(w GatewayWorld, backends *backendSet, cert func(namespace, name string) (*tls.Certificate, error)) *GatewayPlan {
	p := &GatewayPlan{Gateways: map[types.NamespacedName]*gatewayState{},
		Parents: map[types.NamespacedName][]gatewayv1.RouteParentStatus{}, ports: map[netip.AddrPort]*gwPort{}}
	for _, gw := range ourGateways(w) {
		st := &gatewayState{gw: gw}
		if w.Address != nil {
			st.addr = w.Address(gw)
		}
		for _, l := range gw.Spec.Listeners {
			st.listeners = append(st.listeners, compileListener(w, gw, l, cert))
		}
		markConflicts(st.listeners)
		st.conds = gatewayConditions(st)
		p.Gateways[types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}] = st
	}
	routes := slices.Clone(w.Routes)
	slices.SortFunc(routes, func(a, b *gatewayv1.HTTPRoute) int { return olderFirst(a.ObjectMeta, b.ObjectMeta) })
	for _, r := range routes {
		p.attachRoute(w, r, backends)
	}
	for _, st := range p.Gateways {
		p.addPorts(st)
	}
	for _, gp := range p.ports {
		gp.seal()
	}
	return p
}

// gatewayConditions: a Gateway of ours is accepted unless it asks for
// addresses of its own (the address is the cloud provider's choice) or
// none of its listeners is accepted; accepted with reason ListenersNotValid
// when only some are. It is programmed once it has an address.
func gatewayConditions(st *gatewayState) []condition {
	acc := condition{typ: string(gatewayv1.GatewayConditionAccepted), ok: true, reason: string(gatewayv1.GatewayReasonAccepted), msg: "served by " + string(GatewayControllerName)}
	var refused []string
	for _, ls := range st.listeners {
		if !ls.accepted.ok {
			refused = append(refused, string(ls.l.Name))
		}
	}
	switch {
	case len(st.gw.Spec.Addresses) > 0:
		acc = condition{typ: acc.typ, reason: string(gatewayv1.GatewayReasonUnsupportedAddress),
			msg: "spec.addresses is not supported: the address comes from the cluster's LoadBalancer pool; remove spec.addresses"}
	case len(refused) > 0 && len(refused) == len(st.listeners):
		acc = condition{typ: acc.typ, reason: string(gatewayv1.GatewayReasonListenersNotValid),
			msg: fmt.Sprintf("no listener is accepted (%s): see each listener's Accepted condition", strings.Join(refused, ", "))}
	case len(refused) > 0:
		acc = condition{typ: acc.typ, ok: true, reason: string(gatewayv1.GatewayReasonListenersNotValid),
			msg: fmt.Sprintf("served by %s; listeners %s are not accepted: see their Accepted conditions", GatewayControllerName, strings.Join(refused, ", "))}
	}
	prog := condition{typ: string(gatewayv1.GatewayConditionProgrammed), ok: true, reason: string(gatewayv1.GatewayReasonProgrammed), msg: "served on " + st.addr.String()}
	switch {
	case !acc.ok:
		prog = condition{typ: prog.typ, reason: string(gatewayv1.GatewayReasonInvalid), msg: "the Gateway is not accepted"}
	case !st.addr.IsValid():
		prog = condition{typ: prog.typ, reason: string(gatewayv1.GatewayReasonAddressNotAssigned),
			msg: "waiting for the LoadBalancer address of its Service in " + Namespace}
	}
	return []condition{acc, prog}
}

// compileListener checks one listener: protocol, route kinds and TLS.
func compileListener(w GatewayWorld, gw *gatewayv1.Gateway, l gatewayv1.Listener, cert func(string, string) (*tls.Certificate, error)) *listenerState {
	ls := &listenerState{l: l,
		accepted:   condition{typ: string(gatewayv1.ListenerConditionAccepted), ok: true, reason: string(gatewayv1.ListenerReasonAccepted)},
		resolved:   condition{typ: string(gatewayv1.ListenerConditionResolvedRefs), ok: true, reason: string(gatewayv1.ListenerReasonResolvedRefs)},
		conflicted: condition{typ: string(gatewayv1.ListenerConditionConflicted), reason: string(gatewayv1.ListenerReasonNoConflicts)},
	}
	if l.Protocol != gatewayv1.HTTPProtocolType && l.Protocol != gatewayv1.HTTPSProtocolType {
		ls.accepted = condition{typ: ls.accepted.typ, reason: string(gatewayv1.ListenerReasonUnsupportedProtocol),
			msg: fmt.Sprintf("protocol %s is not supported: use HTTP or HTTPS", l.Protocol)}
		return ls
	}
	var bad []string
	ls.kinds, bad = routeKinds(l)
	if len(bad) > 0 {
		ls.resolved = condition{typ: ls.resolved.typ, reason: string(gatewayv1.ListenerReasonInvalidRouteKinds),
			msg: fmt.Sprintf("route kinds %v are not supported: only gateway.networking.k8s.io/HTTPRoute", bad)}
	}
	if l.Protocol == gatewayv1.HTTPSProtocolType {
		if c := listenerCerts(w, gw, l, cert, ls); !c.ok {
			ls.resolved = c
		}
	}
	return ls
}

// routeKinds are the allowed route kinds of a listener that the plugin
// supports, and the names of those it does not.
func routeKinds(l gatewayv1.Listener) ([]gatewayv1.RouteGroupKind, []string) {
	httpRoute := gatewayv1.RouteGroupKind{Group: ptrGroup(gatewayv1.GroupName), Kind: "HTTPRoute"}
	if l.AllowedRoutes == nil || len(l.AllowedRoutes.Kinds) == 0 {
		return []gatewayv1.RouteGroupKind{httpRoute}, nil
	}
	var ok []gatewayv1.RouteGroupKind
	var bad []string
	for _, k := range l.AllowedRoutes.Kinds {
		g := gatewayv1.GroupName
		if k.Group != nil {
			g = string(*k.Group)
		}
		if g == gatewayv1.GroupName && k.Kind == "HTTPRoute" {
			ok = append(ok, httpRoute)
		} else {
			bad = append(bad, g+"/"+string(k.Kind))
		}
	}
	return ok, bad
}

func ptrGroup(g string) *gatewayv1.Group { x := gatewayv1.Group(g); return &x }

// listenerCerts resolves an HTTPS listener's certificateRefs.
func listenerCerts(w GatewayWorld, gw *gatewayv1.Gateway, l gatewayv1.Listener, cert func(string, string) (*tls.Certificate, error), ls *listenerState) condition {
	fail := func(reason gatewayv1.ListenerConditionReason, msg string) condition {
		return condition{typ: string(gatewayv1.ListenerConditionResolvedRefs), reason: string(reason), msg: msg}
	}
	if l.TLS == nil || len(l.TLS.CertificateRefs) == 0 {
		return fail(gatewayv1.ListenerReasonInvalidCertificateRef, "an HTTPS listener needs tls.certificateRefs naming a kubernetes.io/tls Secret")
	}
	if l.TLS.Mode != nil && *l.TLS.Mode != gatewayv1.TLSModeTerminate {
		return fail(gatewayv1.ListenerReasonInvalidCertificateRef, "tls.mode Passthrough is not supported on HTTPS listeners: use Terminate")
	}
	for _, ref := range l.TLS.CertificateRefs {
		ns := gw.Namespace
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		switch {
		case (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Secret"):
			return fail(gatewayv1.ListenerReasonInvalidCertificateRef, "certificateRefs may name only core Secrets")
		case ns != gw.Namespace && !granted(w.Grants, gatewayv1.GroupName, "Gateway", gw.Namespace, "", "Secret", ns, string(ref.Name)):
			return fail(gatewayv1.ListenerReasonRefNotPermitted,
				fmt.Sprintf("Secret %s/%s is in another namespace and no ReferenceGrant there allows it", ns, ref.Name))
		}
		if cert == nil {
			continue
		}
		c, err := cert(ns, string(ref.Name))
		if err != nil {
			return fail(gatewayv1.ListenerReasonInvalidCertificateRef, fmt.Sprintf("Secret %s/%s: %v", ns, ref.Name, err))
		}
		ls.certs = append(ls.certs, c)
	}
	return condition{ok: true}
}

// granted reports whether a ReferenceGrant in toNS lets objects of
// fromGroup/fromKind in fromNS refer to toGroup/toKind name.
func granted(grants []*gatewayv1.ReferenceGrant, fromGroup, fromKind, fromNS, toGroup, toKind, toNS, name string) bool {
	for _, g := range grants {
		if g.Namespace != toNS {
			continue
		}
		from := slices.ContainsFunc(g.Spec.From, func(f gatewayv1.ReferenceGrantFrom) bool {
			return string(f.Group) == fromGroup && string(f.Kind) == fromKind && string(f.Namespace) == fromNS
		})
		to := slices.ContainsFunc(g.Spec.To, func(t gatewayv1.ReferenceGrantTo) bool {
			return string(t.Group) == toGroup && string(t.Kind) == toKind && (t.Name == nil || string(*t.Name) == name)
		})
		if from && to {
			return true
		}
	}
	return false
}

// markConflicts flags listeners sharing a port with another protocol, or
// a port, protocol and hostname with an earlier listener.
func markConflicts(ls []*listenerState) {
	for i, a := range ls {
		for _, b := range ls[:i] {
			if a.l.Port != b.l.Port || !b.accepted.ok {
				continue
			}
			switch {
			case a.l.Protocol != b.l.Protocol:
				a.conflicted = condition{typ: a.conflicted.typ, ok: true, reason: string(gatewayv1.ListenerReasonProtocolConflict),
					msg: fmt.Sprintf("listener %s serves port %d with protocol %s", b.l.Name, b.l.Port, b.l.Protocol)}
			case hostnameOf(a.l.Hostname) == hostnameOf(b.l.Hostname):
				a.conflicted = condition{typ: a.conflicted.typ, ok: true, reason: string(gatewayv1.ListenerReasonHostnameConflict),
					msg: fmt.Sprintf("listener %s serves port %d with the same hostname", b.l.Name, b.l.Port)}
			}
		}
	}
}

func hostnameOf(h *gatewayv1.Hostname) string {
	if h == nil {
		return ""
	}
	return string(*h)
}
