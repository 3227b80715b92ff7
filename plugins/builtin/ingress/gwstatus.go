package ingress

import (
	"context"
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// gatewayStatus is the status a Gateway should have, built on old so that
// unchanged conditions keep their transition time.
func gatewayStatus(st *gatewayState, old gatewayv1.GatewayStatus) gatewayv1.GatewayStatus {
	gen := st.gw.Generation
	out := gatewayv1.GatewayStatus{Conditions: slices.Clone(old.Conditions)}
	if st.addr.IsValid() {
		out.Addresses = []gatewayv1.GatewayStatusAddress{{Type: ptrTo(gatewayv1.IPAddressType), Value: st.addr.String()}}
	}
	setConditions(&out.Conditions, gen, st.conds...)
	programmed := st.conds[0].ok && st.conds[1].ok
	for _, ls := range st.listeners {
		var conds []metav1.Condition
		if i := slices.IndexFunc(old.Listeners, func(x gatewayv1.ListenerStatus) bool { return x.Name == ls.l.Name }); i >= 0 {
			conds = slices.Clone(old.Listeners[i].Conditions)
		}
		prog := condition{typ: string(gatewayv1.ListenerConditionProgrammed), ok: true, reason: string(gatewayv1.ListenerReasonProgrammed)}
		switch {
		case !ls.usable():
			prog = condition{typ: prog.typ, reason: string(gatewayv1.ListenerReasonInvalid), msg: "the listener is not accepted, has unresolved references or conflicts"}
		case !programmed:
			prog = condition{typ: prog.typ, reason: string(gatewayv1.ListenerReasonPending), msg: "the Gateway has no address yet"}
		}
		setConditions(&conds, gen, ls.accepted, ls.resolved, ls.conflicted, prog)
		kinds := ls.kinds
		if kinds == nil {
			kinds = []gatewayv1.RouteGroupKind{}
		}
		out.Listeners = append(out.Listeners, gatewayv1.ListenerStatus{Name: ls.l.Name, SupportedKinds: kinds,
			AttachedRoutes: ls.attached, Conditions: conds})
	}
	return out
}

func ptrTo[T any](v T) *T { return &v }

func (l *leader) writeGatewayStatus(ctx context.Context, key types.NamespacedName, st *gatewayState) error {
	gw, err := l.gwGateways.Gateways(key.Namespace).Get(key.Name)
	if err != nil {
		return nil // gone since the plan was made
	}
	want := gatewayStatus(st, gw.Status)
	if equality.Semantic.DeepEqual(want, gw.Status) {
		return nil
	}
	upd := gw.DeepCopy()
	upd.Status = want
	if _, err := l.gwClient.GatewayV1().Gateways(key.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("writing the status of Gateway %s: %w", key, err)
	}
	return nil
}

// routeParents merges our parents' statuses into a route's: other
// controllers' entries stay, ours are replaced (keeping transition times).
func routeParents(old []gatewayv1.RouteParentStatus, ours []gatewayv1.RouteParentStatus) []gatewayv1.RouteParentStatus {
	var out []gatewayv1.RouteParentStatus
	for _, p := range old {
		if p.ControllerName != GatewayControllerName {
			out = append(out, p)
		}
	}
	for _, p := range ours {
		var conds []metav1.Condition
		for _, o := range old {
			if o.ControllerName == GatewayControllerName && equality.Semantic.DeepEqual(o.ParentRef, p.ParentRef) {
				conds = slices.Clone(o.Conditions)
			}
		}
		for _, c := range p.Conditions {
			setConditions(&conds, c.ObservedGeneration, condition{typ: c.Type, ok: c.Status == metav1.ConditionTrue, reason: c.Reason, msg: c.Message})
		}
		p.Conditions = conds
		out = append(out, p)
	}
	return out
}

func (l *leader) writeRouteStatus(ctx context.Context, r *gatewayv1.HTTPRoute, ours []gatewayv1.RouteParentStatus) error {
	want := routeParents(r.Status.Parents, ours)
	if equality.Semantic.DeepEqual(want, r.Status.Parents) || (len(want) == 0 && len(r.Status.Parents) == 0) {
		return nil
	}
	upd := r.DeepCopy()
	upd.Status.Parents = want
	if _, err := l.gwClient.GatewayV1().HTTPRoutes(r.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("writing the status of HTTPRoute %s/%s: %w", r.Namespace, r.Name, err)
	}
	return nil
}

// gatewayBundle adds to a TLS bundle the Secrets that HTTPS listeners of
// ours may use (same namespace, or permitted by a ReferenceGrant).
func gatewayBundle(data map[string][]byte, w *GatewayWorld, secret func(namespace, name string) *v1.Secret) {
	for _, gw := range ourGateways(*w) {
		for _, l := range gw.Spec.Listeners {
			if l.TLS == nil {
				continue
			}
			for _, ref := range l.TLS.CertificateRefs {
				ns := gw.Namespace
				if ref.Namespace != nil {
					ns = string(*ref.Namespace)
				}
				if ns != gw.Namespace && !granted(w.Grants, gatewayv1.GroupName, "Gateway", gw.Namespace, "", "Secret", ns, string(ref.Name)) {
					continue
				}
				s := secret(ns, string(ref.Name))
				if s == nil || s.Type != v1.SecretTypeTLS {
					continue
				}
				k := bundleKey(ns, string(ref.Name))
				data[k+"."+v1.TLSCertKey] = s.Data[v1.TLSCertKey]
				data[k+"."+v1.TLSPrivateKeyKey] = s.Data[v1.TLSPrivateKeyKey]
			}
		}
	}
}
