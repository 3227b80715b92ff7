package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func class(name, controller string) *networkingv1.IngressClass {
	return &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressClassSpec{Controller: controller}}
}

func ingress(name, class, host string, paths ...networkingv1.HTTPIngressPath) *networkingv1.Ingress {
	return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr.To(class), Rules: []networkingv1.IngressRule{{Host: host,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}}}}
}

func path(p string, typ networkingv1.PathType, svc string) networkingv1.HTTPIngressPath {
	return networkingv1.HTTPIngressPath{Path: p, PathType: ptr.To(typ), Backend: networkingv1.IngressBackend{
		Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}}}
}

// testWorld has a Service per backend address, port 80 named http, whose
// one ready endpoint is the address.
func testWorld(backends map[string]string, ings ...*networkingv1.Ingress) world {
	return world{ingresses: ings,
		service: func(ns, name string) *v1.Service {
			if _, ok := backends[name]; !ok {
				return nil
			}
			return &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "http", Port: 80}}}}
		},
		slices: func(ns, name string) []*discoveryv1.EndpointSlice {
			host, port, _ := net.SplitHostPort(backends[name])
			var p int32
			fmt.Sscan(port, &p)
			return []*discoveryv1.EndpointSlice{{Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(p)}},
				Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host}}}}}
		},
	}
}

func TestOurs(t *testing.T) {
	classes := []*networkingv1.IngressClass{class("tiny", ControllerName), class("keelson", "keelson.io/ingress")}
	for _, c := range []struct {
		ing  *networkingv1.Ingress
		want bool
	}{
		{ingress("a", "tiny", ""), true},
		{ingress("b", "keelson", ""), false},
		{ingress("c", "missing", ""), false},
		{&networkingv1.Ingress{}, false},
	} {
		if got := ours(c.ing, classes); got != c.want {
			t.Errorf("ours(%s with class %v) = %v, want %v", c.ing.Name, c.ing.Spec.IngressClassName, got, c.want)
		}
	}
}

func TestRouting(t *testing.T) {
	tb := build(testWorld(map[string]string{"foo": "10.0.0.1:8080", "bar": "10.0.0.2:8080"},
		ingress("i", "tiny", "tiny.example",
			path("/", networkingv1.PathTypePrefix, "foo"), path("/bar", networkingv1.PathTypePrefix, "bar"),
			path("/exact", networkingv1.PathTypeExact, "bar"), path("/exact", networkingv1.PathTypePrefix, "foo"))))
	for _, c := range []struct{ host, path, want string }{
		{"tiny.example", "/", "10.0.0.1:8080"}, {"tiny.example:8880", "/bar/x", "10.0.0.2:8080"},
		{"TINY.example", "/barx", "10.0.0.1:8080"}, {"tiny.example", "/exact", "10.0.0.2:8080"},
		{"tiny.example", "/exact/more", "10.0.0.1:8080"}, {"other.example", "/", ""},
	} {
		rt, ok := tb.lookup(c.host, c.path)
		got := ""
		if ok {
			got = strings.Join(rt.endpoints, ",")
		}
		if got != c.want {
			t.Errorf("%s%s routed to %q, want %q", c.host, c.path, got, c.want)
		}
	}
}

func TestDataPlaneServes(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend host=%s path=%s xff=%s", r.Host, r.URL.Path, r.Header.Get("X-Forwarded-For"))
	}))
	defer backend.Close()
	d := &dataPlane{rp: reverseProxy()}
	d.table.Store(build(testWorld(map[string]string{"web": strings.TrimPrefix(backend.URL, "http://"), "down": "127.0.0.1:1"},
		ingress("i", "tiny", "tiny.example", path("/", networkingv1.PathTypePrefix, "web"), path("/none", networkingv1.PathTypePrefix, "gone")))))
	front := httptest.NewServer(d)
	defer front.Close()
	for _, c := range []struct {
		host, path string
		code       int
		body       string
	}{
		{"tiny.example", "/a", 200, "backend host=tiny.example path=/a xff=127.0.0.1"},
		{"tiny.example", "/none", 503, "503"},
		{"other.example", "/a", 404, "404"},
	} {
		req, _ := http.NewRequest(http.MethodGet, front.URL+c.path, nil)
		req.Host = c.host
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.HasPrefix(string(b), c.body) {
			t.Errorf("%s%s: %d %q, want %d %q...", c.host, c.path, resp.StatusCode, b, c.code, c.body)
		}
	}
}

func TestLeaderWritesNodeAddresses(t *testing.T) {
	node := func(name, ip string) *v1.Node {
		return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
			Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: ip}, {Type: v1.NodeHostName, Address: name}}}}
	}
	mine, theirs := ingress("mine", "tiny", "a"), ingress("theirs", "keelson", "b")
	client := fake.NewClientset(mine, theirs)
	l := &leader{client: client, ings: store(mine, theirs),
		classes: store(class("tiny", ControllerName), class("keelson", "keelson.io/ingress")),
		nodes:   store(node("n2", "10.0.0.12"), node("n1", "10.0.0.11"))}
	for _, key := range []string{"default/mine", "default/theirs", "default/gone"} {
		if _, err := l.reconcile(context.Background(), key); err != nil {
			t.Fatalf("reconcile %s: %v", key, err)
		}
	}
	got, _ := client.NetworkingV1().Ingresses("default").Get(context.Background(), "mine", metav1.GetOptions{})
	if lb := got.Status.LoadBalancer.Ingress; len(lb) != 2 || lb[0].IP != "10.0.0.11" || lb[1].IP != "10.0.0.12" {
		t.Errorf("status of our Ingress: %v, want the nodes' internal IPs, sorted", lb)
	}
	other, _ := client.NetworkingV1().Ingresses("default").Get(context.Background(), "theirs", metav1.GetOptions{})
	if len(other.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("status of another controller's Ingress written: %v", other.Status.LoadBalancer.Ingress)
	}
}

// store is an informer whose cache holds objs (it is never run).
func store(objs ...runtime.Object) cache.SharedIndexInformer {
	inf := cache.NewSharedIndexInformer(&cache.ListWatch{}, nil, 0, cache.Indexers{})
	for _, o := range objs {
		_ = inf.GetStore().Add(o)
	}
	return inf
}
