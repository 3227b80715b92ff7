package ingress

import (
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"

	"github.com/keelson/keelson/plugins/sdk"
)

// gatewayInformers are the caches the Gateway API part is compiled from.
type gatewayInformers struct {
	classes, gateways, routes, grants, namespaces cache.SharedIndexInformer
}

func newGatewayClient(env sdk.Env) (gwclient.Interface, error) {
	// The plugin's configuration asks for protobuf, which CRDs do not
	// speak: the Gateway API client uses JSON.
	cfg := rest.CopyConfig(env.RESTConfig)
	cfg.ContentType, cfg.AcceptContentTypes = "application/json", "application/json"
	c, err := gwclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the Gateway API client: %w", err)
	}
	return c, nil
}

// newGatewayFactory makes the Gateway API informers' factory; trim is
// their cache transform.
func newGatewayFactory(env sdk.Env, trim cache.TransformFunc) (gwinformers.SharedInformerFactory, error) {
	c, err := newGatewayClient(env)
	if err != nil {
		return nil, err
	}
	return gwinformers.NewSharedInformerFactoryWithOptions(c, 0, gwinformers.WithTransform(trim)), nil
}

// trimGatewayForNode keeps what the data plane compiles from: the nodes
// write no status, and read of a Gateway's only its addresses.
func trimGatewayForNode(obj any) (any, error) {
	switch o := obj.(type) {
	case *gatewayv1.GatewayClass:
		o.Status = gatewayv1.GatewayClassStatus{}
	case *gatewayv1.Gateway:
		o.Status = gatewayv1.GatewayStatus{Addresses: o.Status.Addresses}
	case *gatewayv1.HTTPRoute:
		o.Status = gatewayv1.HTTPRouteStatus{}
	}
	return sdk.StripManagedFields(obj)
}

// newGatewayInformers registers the informers in gwf and, for the
// namespaces (their labels, for allowedRoutes selectors), in core.
func newGatewayInformers(gwf gwinformers.SharedInformerFactory, core informers.SharedInformerFactory) gatewayInformers {
	g := gwf.Gateway().V1()
	return gatewayInformers{classes: g.GatewayClasses().Informer(), gateways: g.Gateways().Informer(),
		routes: g.HTTPRoutes().Informer(), grants: g.ReferenceGrants().Informer(),
		namespaces: core.Core().V1().Namespaces().Informer()}
}

func (g gatewayInformers) all() []cache.SharedIndexInformer {
	return []cache.SharedIndexInformer{g.classes, g.gateways, g.routes, g.grants, g.namespaces}
}

func listAs[T any](inf cache.SharedIndexInformer) []T {
	var out []T
	for _, o := range inf.GetStore().List() {
		if x, ok := o.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

// world is the Gateway API objects in the caches; address says where a
// Gateway is served.
func (g gatewayInformers) world(address func(*gatewayv1.Gateway) netip.Addr) *GatewayWorld {
	return &GatewayWorld{
		Classes:  listAs[*gatewayv1.GatewayClass](g.classes),
		Gateways: listAs[*gatewayv1.Gateway](g.gateways),
		Routes:   listAs[*gatewayv1.HTTPRoute](g.routes),
		Grants:   listAs[*gatewayv1.ReferenceGrant](g.grants),
		Namespace: func(name string) *v1.Namespace {
			o, ok, _ := g.namespaces.GetStore().GetByKey(name)
			if !ok {
				return nil
			}
			return o.(*v1.Namespace)
		},
		Address: address,
	}
}

// statusAddress is the IP address the leader wrote into a Gateway's
// status: where the data plane serves it.
func statusAddress(gw *gatewayv1.Gateway) netip.Addr {
	for _, a := range gw.Status.Addresses {
		if a.Type != nil && *a.Type != gatewayv1.IPAddressType {
			continue
		}
		if ip, err := netip.ParseAddr(a.Value); err == nil {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
