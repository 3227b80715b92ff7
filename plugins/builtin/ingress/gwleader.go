package ingress

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// gatewayKey is the queue key of the whole Gateway API state: classes,
// Gateways, their Services and every status, recomputed together.
const gatewayKey = "~gateway"

// gatewayLabel marks a Gateway's Service with a hash of the Gateway's
// namespace/name (a label value cannot hold a '/').
const gatewayLabel = "gateway.keelson.io/gateway"

// gatewayAnnotation names the Gateway (namespace/name) a Service serves.
const gatewayAnnotation = "gateway.keelson.io/gateway"

// gatewayServiceName is the LoadBalancer Service in Namespace giving a
// Gateway its own address.
func gatewayServiceName(ns, name string) string {
	return "keelson-gw-" + gatewayHash(ns, name)
}

func gatewayHash(ns, name string) string {
	h := sha256.Sum256([]byte(ns + "/" + name))
	return hex.EncodeToString(h[:10])
}

// syncGateways recomputes the Gateway API state and writes what differs.
func (l *leader) syncGateways(ctx context.Context) error {
	if err := l.ensureGatewayClass(ctx); err != nil {
		return err
	}
	w := l.gw.world(l.gatewayAddress)
	backends := newBackendSet(World{Service: l.service, Slices: func(string, string) []*discoveryv1.EndpointSlice { return nil }})
	plan := CompileGateways(*w, backends, l.tlsCert)
	errs := []error{l.writeClassStatuses(ctx, w.Classes)}
	nodes, err := l.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	errs = append(errs, l.ensureGatewayServices(ctx, plan, nodes))
	for key, st := range plan.Gateways {
		errs = append(errs, l.writeGatewayStatus(ctx, key, st))
	}
	for _, r := range w.Routes {
		errs = append(errs, l.writeRouteStatus(ctx, r, plan.Parents[types.NamespacedName{Namespace: r.Namespace, Name: r.Name}]))
	}
	return errors.Join(errs...)
}

func (l *leader) service(ns, name string) *v1.Service {
	s, err := l.allServices.Services(ns).Get(name)
	if err != nil {
		return nil
	}
	return s
}

// tlsCert loads a kubernetes.io/tls Secret's pair, to check it.
func (l *leader) tlsCert(ns, name string) (*tls.Certificate, error) {
	s, err := l.secrets.Secrets(ns).Get(name)
	if err != nil {
		return nil, fmt.Errorf("no Secret of type %s by that name", v1.SecretTypeTLS)
	}
	c, err := tls.X509KeyPair(s.Data[v1.TLSCertKey], s.Data[v1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Errorf("invalid certificate or key: %w", err)
	}
	return &c, nil
}

// gatewayAddress is the LoadBalancer address of a Gateway's Service.
func (l *leader) gatewayAddress(gw *gatewayv1.Gateway) netip.Addr {
	svc, err := l.services.Services(Namespace).Get(gatewayServiceName(gw.Namespace, gw.Name))
	if err != nil {
		return netip.Addr{}
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// ensureGatewayClass creates the GatewayClass keelson when missing.
func (l *leader) ensureGatewayClass(ctx context.Context) error {
	if _, err := l.gwClasses.Get(GatewayClassName); err == nil {
		return nil
	}
	c := &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: GatewayClassName, Labels: maps.Clone(managedBy)},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: GatewayControllerName}}
	if _, err := l.gwClient.GatewayV1().GatewayClasses().Create(ctx, c, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating GatewayClass %s: %w", GatewayClassName, err)
	}
	return nil
}

// SupportedFeatures are the Gateway API features the plugin implements,
// published in the status of its GatewayClasses and claimed by the
// conformance run (e2e/ingress TestGatewayConformance), which checks each.
var SupportedFeatures = []gatewayv1.FeatureName{
	"Gateway", "HTTPRoute", "ReferenceGrant", "GatewayPort8080",
	"HTTPRouteHostRewrite", "HTTPRouteMethodMatching", "HTTPRoutePathRedirect", "HTTPRoutePathRewrite",
	"HTTPRoutePortRedirect", "HTTPRouteQueryParamMatching", "HTTPRouteResponseHeaderModification", "HTTPRouteSchemeRedirect",
	"HTTPRoute303RedirectStatusCode", "HTTPRoute307RedirectStatusCode", "HTTPRoute308RedirectStatusCode",
	"HTTPRouteBackendProtocolH2C", "HTTPRouteBackendProtocolWebSocket", "HTTPRouteDestinationPortMatching",
	"HTTPRouteParentRefPort",
}

func (l *leader) writeClassStatuses(ctx context.Context, classes []*gatewayv1.GatewayClass) error {
	var errs []error
	for _, c := range classes {
		if !OursClass(c) {
			continue
		}
		st := *c.Status.DeepCopy()
		setConditions(&st.Conditions, c.Generation, condition{typ: string(gatewayv1.GatewayClassConditionStatusAccepted), ok: true,
			reason: string(gatewayv1.GatewayClassReasonAccepted), msg: "served by the built-in ingress plugin"})
		st.SupportedFeatures = nil
		for _, f := range slices.Sorted(slices.Values(SupportedFeatures)) {
			st.SupportedFeatures = append(st.SupportedFeatures, gatewayv1.SupportedFeature{Name: f})
		}
		if equality.Semantic.DeepEqual(st, c.Status) {
			continue
		}
		upd := c.DeepCopy()
		upd.Status = st
		if _, err := l.gwClient.GatewayV1().GatewayClasses().UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("writing the status of GatewayClass %s: %w", c.Name, err))
		}
	}
	return errors.Join(errs...)
}

// setConditions sets each condition, keeping the transition time of one
// whose status did not change.
func setConditions(conds *[]metav1.Condition, gen int64, cs ...condition) {
	for _, c := range cs {
		m := c.meta(gen)
		if old := findCondition(*conds, m.Type); old != nil && old.Status == m.Status {
			m.LastTransitionTime = old.LastTransitionTime
		} else {
			m.LastTransitionTime = metav1.Now()
		}
		*conds = slices.DeleteFunc(*conds, func(x metav1.Condition) bool { return x.Type == m.Type })
		*conds = append(*conds, m)
	}
	slices.SortFunc(*conds, func(a, b metav1.Condition) int {
		if a.Type < b.Type {
			return -1
		}
		if a.Type > b.Type {
			return 1
		}
		return 0
	})
}

func findCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

// gatewayService is the LoadBalancer Service giving a Gateway its address:
// a port per listener port, to the data plane's HTTP or HTTPS port.
func gatewayService(cfg Config, st *gatewayState) *v1.Service {
	svc := desiredService(cfg)
	svc.Name = gatewayServiceName(st.gw.Namespace, st.gw.Name)
	svc.Labels[gatewayLabel] = gatewayHash(st.gw.Namespace, st.gw.Name)
	svc.Annotations = map[string]string{gatewayAnnotation: st.gw.Namespace + "/" + st.gw.Name}
	svc.Spec.Ports = nil
	seen := map[int32]bool{}
	for _, ls := range st.listeners {
		if !ls.accepted.ok || ls.conflicted.ok || seen[int32(ls.l.Port)] {
			continue
		}
		seen[int32(ls.l.Port)] = true
		name, target := "http", cfg.HTTPPort
		if ls.l.Protocol == gatewayv1.HTTPSProtocolType {
			name, target = "https", cfg.HTTPSPort
		}
		svc.Spec.Ports = append(svc.Spec.Ports, v1.ServicePort{Name: fmt.Sprintf("%s-%d", name, ls.l.Port), Protocol: v1.ProtocolTCP,
			Port: int32(ls.l.Port), TargetPort: intstr.FromInt32(int32(target))})
	}
	return svc
}

// ensureGatewayServices keeps a Service and EndpointSlice per Gateway of
// ours with a listener, and deletes those of Gateways gone.
func (l *leader) ensureGatewayServices(ctx context.Context, plan *GatewayPlan, nodes []*v1.Node) error {
	var errs []error
	want := map[string]bool{}
	for _, st := range plan.Gateways {
		svc := gatewayService(l.cfg, st)
		if len(svc.Spec.Ports) == 0 {
			continue
		}
		want[svc.Name] = true
		errs = append(errs, l.ensureGatewayService(ctx, svc), l.ensureGatewaySlice(ctx, svc, nodes))
	}
	got, err := l.services.Services(Namespace).List(labels.SelectorFromSet(managedBy))
	if err != nil {
		return err
	}
	for _, s := range got {
		if _, ok := s.Labels[gatewayLabel]; !ok || want[s.Name] {
			continue
		}
		err := l.client.CoreV1().Services(Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting Service %s/%s of a Gateway gone: %w", Namespace, s.Name, err))
		}
		err = l.client.DiscoveryV1().EndpointSlices(Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting EndpointSlice %s/%s of a Gateway gone: %w", Namespace, s.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (l *leader) ensureGatewayService(ctx context.Context, want *v1.Service) error {
	c := l.client.CoreV1().Services(Namespace)
	got, err := l.services.Services(Namespace).Get(want.Name)
	switch {
	case apierrors.IsNotFound(err):
		if _, err := c.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Service %s/%s: %w", Namespace, want.Name, err)
		}
		return nil
	case err != nil:
		return err
	case samePorts(got.Spec.Ports, want.Spec.Ports):
		return nil
	}
	upd := got.DeepCopy()
	upd.Spec.Ports = want.Spec.Ports
	if _, err := c.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating the ports of Service %s/%s: %w", Namespace, want.Name, err)
	}
	return nil
}

func samePorts(got, want []v1.ServicePort) bool {
	return slices.EqualFunc(got, want, func(g, w v1.ServicePort) bool {
		return g.Name == w.Name && g.Port == w.Port && g.Protocol == w.Protocol && g.TargetPort == w.TargetPort
	})
}

func (l *leader) ensureGatewaySlice(ctx context.Context, svc *v1.Service, nodes []*v1.Node) error {
	want := desiredSlice(l.cfg, nodes)
	want.Name = svc.Name
	want.Labels[discoveryv1.LabelServiceName] = svc.Name
	want.Ports = nil
	for _, p := range svc.Spec.Ports {
		want.Ports = append(want.Ports, discoveryv1.EndpointPort{Name: &p.Name, Protocol: &p.Protocol, Port: &p.TargetPort.IntVal})
	}
	return l.applySlice(ctx, want)
}
