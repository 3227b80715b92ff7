package ingress

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

var gwAddr = netip.MustParseAddr("10.9.0.200")

// gwWorld decodes YAML documents into a GatewayWorld with the class
// keelson; every Service named exists with port 80 and endpoint
// 10.0.0.<n>:8080 (n its order).
func gwWorld(t *testing.T, docs ...string) (World, GatewayWorld) {
	t.Helper()
	gw := GatewayWorld{Classes: []*gatewayv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "keelson"},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: GatewayControllerName}}},
		Namespace: func(name string) *v1.Namespace {
			return &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"team": strings.TrimSuffix(name, "-ns")}}}
		},
		Address: func(*gatewayv1.Gateway) netip.Addr { return gwAddr }}
	for i, d := range docs {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(d), &meta); err != nil {
			t.Fatal(err)
		}
		var obj metav1.Object
		switch meta.Kind {
		case "Gateway":
			g := &gatewayv1.Gateway{}
			obj, gw.Gateways = g, append(gw.Gateways, g)
		case "HTTPRoute":
			r := &gatewayv1.HTTPRoute{}
			obj, gw.Routes = r, append(gw.Routes, r)
		case "ReferenceGrant":
			g := &gatewayv1.ReferenceGrant{}
			obj, gw.Grants = g, append(gw.Grants, g)
		default:
			t.Fatalf("kind %q", meta.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(d), obj); err != nil {
			t.Fatal(err)
		}
		if obj.GetNamespace() == "" {
			obj.SetNamespace("default")
		}
		obj.SetCreationTimestamp(metav1.NewTime(time.Unix(int64(1000+i), 0)))
	}
	backends := map[string]*httptest.Server{}
	w := World{
		Service: func(ns, name string) *v1.Service {
			if strings.HasPrefix(name, "missing") {
				return nil
			}
			return &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "http", Port: 80}}}}
		},
		// Each Service's one endpoint is a loopback server answering
		// "<namespace>/<name> <path> <Host>".
		Slices: func(ns, name string) []*discoveryv1.EndpointSlice {
			key := ns + "/" + name
			s := backends[key]
			if s == nil {
				s = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
					rw.Header().Set("X-Backend", key)
					fmt.Fprintf(rw, "%s %s %s", key, r.URL.Path, r.Host)
				}))
				t.Cleanup(s.Close)
				backends[key] = s
			}
			addr := netip.MustParseAddrPort(s.Listener.Addr().String())
			return []*discoveryv1.EndpointSlice{{Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(addr.Port()))}},
				Endpoints: []discoveryv1.Endpoint{{Addresses: []string{addr.Addr().String()}}}}}
		},
		Gateway: &gw,
	}
	return w, gw
}

const gwHTTP = `kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: keelson
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: foo, port: 80, protocol: HTTP, hostname: foo.example.com}
  - {name: wild, port: 80, protocol: HTTP, hostname: "*.wild.example.com", allowedRoutes: {namespaces: {from: All}}}
  - {name: sel, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: blue}}}}}
`

func parentConds(t *testing.T, p *GatewayPlan, ns, name string) []string {
	t.Helper()
	var out []string
	for _, ps := range p.Parents[types.NamespacedName{Namespace: ns, Name: name}] {
		s := ""
		for _, c := range ps.Conditions {
			s += c.Type + "=" + string(c.Status) + "/" + c.Reason + " "
		}
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

// TestRouteAttachment: parentRefs by sectionName and port, allowedRoutes
// namespaces (Same, All, Selector), hostname intersection, and the
// reasons a parent reports.
func TestRouteAttachment(t *testing.T) {
	route := func(ns, parent, hosts string) string {
		return `kind: HTTPRoute
metadata: {name: r, namespace: ` + ns + `}
spec:
  parentRefs: [` + parent + `]
  hostnames: ` + hosts + `
  rules: [{backendRefs: [{name: svc, port: 80}]}]
`
	}
	for _, c := range []struct {
		name, route string
		want        string
		attached    map[string]int32
	}{
		{"same namespace: every listener allowing it", route("default", "{name: gw}", "[]"), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs",
			map[string]int32{"http": 1, "foo": 1, "wild": 1, "sel": 0}},
		{"section name", route("default", "{name: gw, sectionName: foo}", "[]"), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs",
			map[string]int32{"http": 0, "foo": 1}},
		{"port", route("default", "{name: gw, port: 80}", "[foo.example.com]"), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs",
			map[string]int32{"http": 1, "foo": 1, "sel": 0}},
		{"no such section", route("default", "{name: gw, sectionName: nope}", "[]"), "Accepted=False/NoMatchingParent ResolvedRefs=True/ResolvedRefs", nil},
		{"other namespace not allowed", route("other-ns", "{name: gw, namespace: default, sectionName: http}", "[]"),
			"Accepted=False/NotAllowedByListeners ResolvedRefs=True/ResolvedRefs", nil},
		{"other namespace allowed by All", route("other-ns", "{name: gw, namespace: default}", "[]"), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs",
			map[string]int32{"http": 0, "wild": 1}},
		{"selector matches", route("blue-ns", "{name: gw, namespace: default, sectionName: sel}", "[]"), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs",
			map[string]int32{"sel": 1}},
		{"selector does not match", route("red-ns", "{name: gw, namespace: default, sectionName: sel}", "[]"),
			"Accepted=False/NotAllowedByListeners ResolvedRefs=True/ResolvedRefs", nil},
		{"no hostname in common", route("default", "{name: gw, sectionName: foo}", "[bar.example.com]"),
			"Accepted=False/NoMatchingListenerHostname ResolvedRefs=True/ResolvedRefs", nil},
		{"wildcard route narrowed by listener", route("default", "{name: gw, sectionName: foo}", `["*.example.com"]`),
			"Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs", map[string]int32{"foo": 1}},
		{"another controller's gateway", route("default", "{name: elsewhere}", "[]"), "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, gw := gwWorld(t, gwHTTP, c.route)
			p := CompileGateways(gw, newBackendSet(w), nil)
			got := strings.Join(parentConds(t, p, gw.Routes[0].Namespace, "r"), "; ")
			if got != c.want {
				t.Errorf("parent conditions %q; want %q", got, c.want)
			}
			st := p.Gateways[types.NamespacedName{Namespace: "default", Name: "gw"}]
			for _, ls := range st.listeners {
				if want, ok := c.attached[string(ls.l.Name)]; ok && ls.attached != want {
					t.Errorf("listener %s has %d attached routes; want %d", ls.l.Name, ls.attached, want)
				}
			}
		})
	}
}

func TestHostnameIntersection(t *testing.T) {
	for _, c := range []struct {
		listener string
		route    []gatewayv1.Hostname
		want     string
	}{
		{"", nil, ""},
		{"", []gatewayv1.Hostname{"a.example.com"}, "a.example.com"},
		{"a.example.com", nil, "a.example.com"},
		{"a.example.com", []gatewayv1.Hostname{"b.example.com"}, "-"},
		{"*.example.com", []gatewayv1.Hostname{"a.example.com", "a.b.example.com", "example.com"}, "a.example.com,a.b.example.com"},
		{"a.example.com", []gatewayv1.Hostname{"*.example.com"}, "a.example.com"},
		{"*.example.com", []gatewayv1.Hostname{"*.b.example.com"}, "*.b.example.com"},
		{"*.b.example.com", []gatewayv1.Hostname{"*.example.com"}, "*.b.example.com"},
		{"*.example.com", []gatewayv1.Hostname{"*.other.com"}, "-"},
	} {
		got := strings.Join(intersect(c.listener, c.route), ",")
		if got == "" && len(intersect(c.listener, c.route)) == 0 {
			got = "-"
		}
		if got != c.want {
			t.Errorf("intersect(%q, %v) = %q; want %q", c.listener, c.route, got, c.want)
		}
	}
}

// TestReferenceGrants: a backend or a certificate in another namespace is
// used only with a ReferenceGrant there naming the source kind and
// namespace (and the name, when it names one).
func TestReferenceGrants(t *testing.T) {
	route := `kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: svc, namespace: backends, port: 80}]}]
`
	grant := func(fromNS, toName string) string {
		return `kind: ReferenceGrant
metadata: {name: g, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: ` + fromNS + `}]
  to: [{group: "", kind: Service` + toName + `}]
`
	}
	for _, c := range []struct {
		name, grant, want string
	}{
		{"no grant", "", "Accepted=True/Accepted ResolvedRefs=False/RefNotPermitted"},
		{"grant for every Service", grant("default", ""), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs"},
		{"grant for that Service", grant("default", ", name: svc"), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs"},
		{"grant for another Service", grant("default", ", name: other"), "Accepted=True/Accepted ResolvedRefs=False/RefNotPermitted"},
		{"grant from another namespace", grant("elsewhere", ""), "Accepted=True/Accepted ResolvedRefs=False/RefNotPermitted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			docs := []string{gwHTTP, route}
			if c.grant != "" {
				docs = append(docs, c.grant)
			}
			w, gw := gwWorld(t, docs...)
			tbl := Build(World{Service: w.Service, Slices: w.Slices, Gateway: &gw})
			if got := strings.Join(parentConds(t, tbl.Gateways, "default", "r"), "; "); got != c.want {
				t.Errorf("parent conditions %q; want %q", got, c.want)
			}
			rec := serveGW(t, tbl, 80, "x", "/", nil)
			if wantOK := strings.Contains(c.want, "ResolvedRefs=True"); wantOK != (rec.Code == http.StatusOK) || (!wantOK && rec.Code != 500) {
				t.Errorf("a request got %d %q; a permitted backend answers 200, a refused one 500", rec.Code, rec.Body)
			}
		})
	}
}

// TestRouteResolvedRefs: the reasons for backends that do not resolve.
func TestRouteResolvedRefs(t *testing.T) {
	for _, c := range []struct{ backend, want string }{
		{"{name: missing, port: 80}", "ResolvedRefs=False/BackendNotFound"},
		{"{name: svc, port: 80, kind: Bucket, group: example.com}", "ResolvedRefs=False/InvalidKind"},
		{"{name: svc, port: 80}", "ResolvedRefs=True/ResolvedRefs"},
	} {
		w, gw := gwWorld(t, gwHTTP, `kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules: [{backendRefs: [`+c.backend+`]}]
`)
		p := CompileGateways(gw, newBackendSet(w), nil)
		if got := parentConds(t, p, "default", "r"); len(got) != 1 || !strings.HasSuffix(got[0], c.want) {
			t.Errorf("backend %s: conditions %q; want %s", c.backend, got, c.want)
		}
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func serveGW(t *testing.T, tbl *Table, port uint16, host, target string, h http.Header) *httptest.ResponseRecorder {
	t.Helper()
	p := NewProxy(discard(), false, nil)
	p.Set(tbl)
	return serveReq(t, p, "GET", host, target, h, port)
}

// serveReq has p serve one request as if it arrived on the Gateway
// address's port.
func serveReq(t *testing.T, p *Proxy, method, host, target string, h http.Header, port uint16) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, "http://"+host+target, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	req = req.WithContext(context.WithValue(t.Context(), connDstKeyT{}, netip.AddrPortFrom(gwAddr, port)))
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	return rec
}

// TestGatewayListenersNotValid: a Gateway is refused when none of its
// listeners is accepted and accepted with reason ListenersNotValid when
// some are not; a route still attaches to (and is counted on) a listener
// whose certificate is missing, but nothing is served there.
func TestGatewayListenersNotValid(t *testing.T) {
	gwConds := func(p *GatewayPlan, name string) string {
		st := p.Gateways[types.NamespacedName{Namespace: "default", Name: name}]
		var out []string
		for _, c := range st.conds {
			out = append(out, fmt.Sprintf("%s=%v/%s", c.typ, c.ok, c.reason))
		}
		return strings.Join(out, " ")
	}
	_, gw := gwWorld(t, `kind: Gateway
metadata: {name: none}
spec:
  gatewayClassName: keelson
  listeners: [{name: bad, port: 1111, protocol: INVALID}]
`, `kind: Gateway
metadata: {name: some}
spec:
  gatewayClassName: keelson
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: bad, port: 1111, protocol: INVALID}
`, `kind: Gateway
metadata: {name: nocert}
spec:
  gatewayClassName: keelson
  listeners:
  - {name: tls, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: does-not-exist}]}}
`, `kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: nocert, sectionName: tls}]
  rules: [{backendRefs: [{name: svc, port: 80}]}]
`)
	w, _ := gwWorld(t)
	p := CompileGateways(gw, newBackendSet(w), func(ns, name string) (*tls.Certificate, error) {
		return nil, fmt.Errorf("secret %s/%s not found", ns, name)
	})
	for name, want := range map[string]string{
		"none":   "Accepted=false/ListenersNotValid Programmed=false/Invalid",
		"some":   "Accepted=true/ListenersNotValid Programmed=true/Programmed",
		"nocert": "Accepted=true/Accepted Programmed=true/Programmed",
	} {
		if got := gwConds(p, name); got != want {
			t.Errorf("Gateway %s: %s; want %s", name, got, want)
		}
	}
	st := p.Gateways[types.NamespacedName{Namespace: "default", Name: "nocert"}]
	if ls := st.listeners[0]; ls.attached != 1 || ls.resolved.ok {
		t.Errorf("listener tls: attached %d, resolvedRefs %v; want 1 route attached and unresolved refs", ls.attached, ls.resolved.ok)
	}
	if got := parentConds(t, p, "default", "r"); len(got) != 1 || !strings.HasPrefix(got[0], "Accepted=True/Accepted") {
		t.Errorf("route conditions %q; want Accepted", got)
	}
	for key := range p.ports {
		if key.Port() == 443 || key.Port() == 1111 {
			t.Errorf("port %d is served; a listener without its certificate or with an unsupported protocol must not be", key.Port())
		}
	}
}
