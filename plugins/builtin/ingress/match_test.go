package ingress

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// path is one Ingress path to a Service named after it, port 80.
type path struct {
	path string
	typ  networkingv1.PathType
	svc  string
}

func rule(host string, paths ...path) networkingv1.IngressRule {
	r := networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}
	for _, p := range paths {
		r.HTTP.Paths = append(r.HTTP.Paths, networkingv1.HTTPIngressPath{Path: p.path, PathType: ptr.To(p.typ), Backend: svcBackend(p.svc)})
	}
	return r
}

func svcBackend(name string) networkingv1.IngressBackend {
	return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name, Port: networkingv1.ServiceBackendPort{Number: 80}}}
}

func ing(name string, age int, rules ...networkingv1.IngressRule) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: metav1.Unix(int64(1000-age), 0)},
		Spec:       networkingv1.IngressSpec{Rules: rules},
	}
}

// world has every Service it is asked for, one ready endpoint each whose
// address names the Service (so a test reads the chosen Service back).
func world(ings ...*networkingv1.Ingress) World {
	return World{
		Ingresses: ings,
		Service: func(ns, name string) *v1.Service {
			if name == "missing" {
				return nil
			}
			return &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "web", Port: 80, Protocol: v1.ProtocolTCP}}}}
		},
		Slices: func(ns, name string) []*discoveryv1.EndpointSlice {
			return []*discoveryv1.EndpointSlice{{
				Ports:     []discoveryv1.EndpointPort{{Name: ptr.To("web"), Port: ptr.To(int32(8080))}},
				Endpoints: []discoveryv1.Endpoint{{Addresses: []string{name}}},
			}}
		},
	}
}

func routed(t *Table, host, p string) string {
	r := t.Route(host, p)
	if r == nil {
		return "404"
	}
	b := r.Backend
	if len(b.Endpoints) == 0 {
		return "503"
	}
	return b.Endpoints[0][:len(b.Endpoints[0])-len(":8080")]
}

const (
	exact  = networkingv1.PathTypeExact
	prefix = networkingv1.PathTypePrefix
	impl   = networkingv1.PathTypeImplementationSpecific
)

// The path cases of the Ingress documentation's examples and the ingress
// conformance suite's path rules.
func TestPathMatching(t *testing.T) {
	cases := []struct {
		paths []path
		req   string
		want  string
	}{
		{[]path{{"/", prefix, "root"}}, "/anything/at/all", "root"},
		{[]path{{"/foo", exact, "foo"}}, "/foo", "foo"},
		{[]path{{"/foo", exact, "foo"}}, "/bar", "404"},
		{[]path{{"/foo", exact, "foo"}}, "/foo/", "404"},
		{[]path{{"/foo/", exact, "foo"}}, "/foo", "404"},
		{[]path{{"/foo", prefix, "foo"}}, "/foo", "foo"},
		{[]path{{"/foo", prefix, "foo"}}, "/foo/", "foo"},
		{[]path{{"/foo/", prefix, "foo"}}, "/foo", "foo"},
		{[]path{{"/foo/", prefix, "foo"}}, "/foo/", "foo"},
		{[]path{{"/aaa/bb", prefix, "bb"}}, "/aaa/bbb", "404"},
		{[]path{{"/aaa/bbb", prefix, "bbb"}}, "/aaa/bbb", "bbb"},
		{[]path{{"/aaa/bbb/", prefix, "bbb"}}, "/aaa/bbb", "bbb"},
		{[]path{{"/aaa/bbb", prefix, "bbb"}}, "/aaa/bbb/", "bbb"},
		{[]path{{"/aaa/bbb", prefix, "bbb"}}, "/aaa/bbb/ccc", "bbb"},
		{[]path{{"/aaa/bbb", prefix, "bbb"}}, "/aaa/bbbxyz", "404"},
		{[]path{{"/aaa", prefix, "aaa"}}, "/aaaccc", "404"},
		{[]path{{"/", prefix, "root"}, {"/aaa", prefix, "aaa"}}, "/aaa/ccc", "aaa"},
		{[]path{{"/", prefix, "root"}, {"/aaa", prefix, "aaa"}, {"/aaa/bbb", prefix, "bbb"}}, "/aaa/bbb", "bbb"},
		{[]path{{"/", prefix, "root"}, {"/aaa", prefix, "aaa"}, {"/aaa/bbb", prefix, "bbb"}}, "/ccc", "root"},
		{[]path{{"/aaa", prefix, "aaa"}}, "/ccc", "404"},
		{[]path{{"/foo", prefix, "pfx"}, {"/foo", exact, "exact"}}, "/foo", "exact"},
		{[]path{{"/foo", exact, "exact"}, {"/foo", prefix, "pfx"}}, "/foo/", "pfx"},
		{[]path{{"/foo", impl, "impl"}}, "/foo/bar", "impl"},
		{[]path{{"/foo", impl, "impl"}}, "/foobar", "404"},
		{[]path{{"/foo/bar", exact, "exact"}, {"/foo", prefix, "pfx"}}, "/foo/bar/baz", "pfx"},
	}
	for _, c := range cases {
		tab := Build(world(ing("i", 0, rule("", c.paths...))))
		if got := routed(tab, "example.com", c.req); got != c.want {
			t.Errorf("paths %v, request %s: routed to %s, want %s", c.paths, c.req, got, c.want)
		}
	}
}

func TestHostMatching(t *testing.T) {
	tab := Build(world(ing("i", 0,
		rule("foo.bar.com", path{"/", prefix, "exact-host"}),
		rule("*.foo.com", path{"/", prefix, "wildcard"}),
		rule("", path{"/", prefix, "any"}),
	)))
	for host, want := range map[string]string{
		"foo.bar.com":      "exact-host",
		"FOO.bar.com:8080": "exact-host",
		"foo.bar.com.":     "exact-host",
		"bar.foo.com":      "wildcard",
		"baz.bar.foo.com":  "any",
		"foo.com":          "any",
		"10.0.0.1":         "any",
		"[fd00::1]:80":     "any",
	} {
		if got := routed(tab, host, "/x"); got != want {
			t.Errorf("host %q routed to %s, want %s", host, got, want)
		}
	}
}

func TestNoHostRuleAndDefaultBackend(t *testing.T) {
	only := Build(world(ing("i", 0, rule("foo.bar.com", path{"/foo", prefix, "foo"}))))
	if got := routed(only, "other.com", "/foo"); got != "404" {
		t.Errorf("unknown host without default backend: %s, want 404", got)
	}
	if got := routed(only, "foo.bar.com", "/bar"); got != "404" {
		t.Errorf("unknown path without default backend: %s, want 404", got)
	}
	withDefault := ing("d", 0, rule("foo.bar.com", path{"/foo", prefix, "foo"}))
	withDefault.Spec.DefaultBackend = ptr.To(svcBackend("fallback"))
	tab := Build(world(withDefault))
	for _, c := range [][2]string{{"other.com", "/foo"}, {"foo.bar.com", "/bar"}} {
		if got := routed(tab, c[0], c[1]); got != "fallback" {
			t.Errorf("%s%s: %s, want the default backend", c[0], c[1], got)
		}
	}
}

func TestOldestIngressWinsConflicts(t *testing.T) {
	old := ing("old", 10, rule("a.com", path{"/x", prefix, "old"}))
	old.Spec.DefaultBackend = ptr.To(svcBackend("old-default"))
	young := ing("young", 1, rule("a.com", path{"/x", prefix, "young"}, path{"/y", prefix, "young-y"}))
	young.Spec.DefaultBackend = ptr.To(svcBackend("young-default"))
	for _, order := range [][]*networkingv1.Ingress{{old, young}, {young, old}} {
		tab := Build(world(order...))
		if got := routed(tab, "a.com", "/x"); got != "old" {
			t.Errorf("/x: %s, want the oldest Ingress's backend", got)
		}
		if got := routed(tab, "a.com", "/y"); got != "young-y" {
			t.Errorf("/y: %s, want young-y (rules merge per host)", got)
		}
		if got := routed(tab, "b.com", "/"); got != "old-default" {
			t.Errorf("default: %s, want old-default", got)
		}
	}
}

func TestBackendResolution(t *testing.T) {
	w := world(ing("i", 0, rule("", path{"/gone", prefix, "missing"})))
	byName := ing("n", 0, networkingv1.IngressRule{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
		Paths: []networkingv1.HTTPIngressPath{
			{Path: "/named", PathType: ptr.To(prefix), Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "s", Port: networkingv1.ServiceBackendPort{Name: "web"}}}},
			{Path: "/wrong", PathType: ptr.To(prefix), Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "s", Port: networkingv1.ServiceBackendPort{Number: 81}}}},
		}}}})
	w.Ingresses = append(w.Ingresses, byName)
	tab := Build(w)
	if got := routed(tab, "h", "/named"); got != "s" {
		t.Errorf("port by name: %s, want s", got)
	}
	if got := routed(tab, "h", "/gone"); got != "503" {
		t.Errorf("missing Service: %s, want 503", got)
	}
	if got := routed(tab, "h", "/wrong"); got != "503" {
		t.Errorf("missing port: %s, want 503", got)
	}
	if len(tab.Problems) != 2 {
		t.Errorf("problems %q, want the missing Service and the missing port", tab.Problems)
	}
}

func TestReadyEndpoints(t *testing.T) {
	sl := []*discoveryv1.EndpointSlice{
		{Ports: []discoveryv1.EndpointPort{{Name: ptr.To("web"), Port: ptr.To(int32(8080))}, {Name: ptr.To("other"), Port: ptr.To(int32(9))}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
				{Addresses: []string{"10.0.0.1"}},
				{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}},
			}},
		{Ports: []discoveryv1.EndpointPort{{Name: ptr.To("web"), Port: ptr.To(int32(8080))}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}}, {Addresses: []string{"fd00::4"}}}},
		{Ports: []discoveryv1.EndpointPort{{Name: ptr.To("other"), Port: ptr.To(int32(9))}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.9"}}}},
	}
	got := readyEndpoints(sl, "web")
	want := []string{"10.0.0.1:8080", "10.0.0.2:8080", "[fd00::4]:8080"}
	if len(got) != len(want) {
		t.Fatalf("ready endpoints %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ready endpoints %v, want %v", got, want)
		}
	}
}

func TestOurs(t *testing.T) {
	ours := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: ClassName}, Spec: networkingv1.IngressClassSpec{Controller: ControllerName}}
	oursDefault := ours.DeepCopy()
	oursDefault.Annotations = map[string]string{annotationDefaultClass: "true"}
	other := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}}
	mine := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "mine"}, Spec: networkingv1.IngressClassSpec{Controller: ControllerName}}
	mk := func(class *string, annotation string) *networkingv1.Ingress {
		i := ing("i", 0)
		i.Spec.IngressClassName = class
		if annotation != "" {
			i.Annotations = map[string]string{annotationClass: annotation}
		}
		return i
	}
	cases := []struct {
		name    string
		ing     *networkingv1.Ingress
		classes []*networkingv1.IngressClass
		want    bool
	}{
		{"class name ours", mk(ptr.To(ClassName), ""), []*networkingv1.IngressClass{ours, other}, true},
		{"another class of our controller", mk(ptr.To("mine"), ""), []*networkingv1.IngressClass{mine}, true},
		{"class name other", mk(ptr.To("nginx"), ""), []*networkingv1.IngressClass{oursDefault, other}, false},
		{"class name missing", mk(ptr.To("gone"), ""), []*networkingv1.IngressClass{oursDefault}, false},
		{"annotation ours", mk(nil, ClassName), nil, true},
		{"annotation other", mk(nil, "nginx"), []*networkingv1.IngressClass{oursDefault, other}, false},
		{"class field beats annotation", mk(ptr.To("nginx"), ClassName), []*networkingv1.IngressClass{ours, other}, false},
		{"no class, ours default", mk(nil, ""), []*networkingv1.IngressClass{oursDefault, other}, true},
		{"no class, ours not default", mk(nil, ""), []*networkingv1.IngressClass{ours, other}, false},
	}
	for _, c := range cases {
		if got := Ours(c.ing, c.classes); got != c.want {
			t.Errorf("%s: Ours = %v, want %v", c.name, got, c.want)
		}
	}
}
