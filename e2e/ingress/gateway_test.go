package ingress

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/keelson/keelson/e2e/harness"
)

var (
	gatewaysGVR   = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}
	httpRoutesGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	classesGVR    = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"}
)

// TestGateway: the GatewayClass keelson is accepted, a Gateway gets an
// address of its own and serves an HTTPRoute routing two paths to two
// Services, reached from a client that is not a node.
func TestGateway(t *testing.T) {
	c := startClusterPool(t, 4, nil)
	dyn, err := dynamic.NewForConfig(c.Servers[0].RESTConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, deadline, "the default ServiceAccount", func() (bool, string) {
		_, err := c.kube.CoreV1().ServiceAccounts("default").Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	harness.Eventually(t, deadline, "GatewayClass keelson accepted", func() (bool, string) {
		gc, err := dyn.Resource(classesGVR).Get(context.Background(), "keelson", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return condition(gc, "Accepted") == "True", fmt.Sprint(gc.Object["status"])
	})
	c.apply(t, backend("foo", 1)+"---\n"+backend("bar", 1)+"---\n"+gatewayAndRoute)
	c.readyPods(t, "foo", 1)
	c.readyPods(t, "bar", 1)
	var addr string
	harness.Eventually(t, deadline, "Gateway web programmed with an address", func() (bool, string) {
		gw, err := dyn.Resource(gatewaysGVR).Namespace("default").Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		addrs, _, _ := unstructured.NestedSlice(gw.Object, "status", "addresses")
		if len(addrs) == 1 {
			addr, _ = addrs[0].(map[string]any)["value"].(string)
		}
		return condition(gw, "Programmed") == "True" && addr != "", fmt.Sprint(gw.Object["status"])
	})
	harness.Eventually(t, deadline, "HTTPRoute paths accepted with resolved references", func() (bool, string) {
		r, err := dyn.Resource(httpRoutesGVR).Namespace("default").Get(context.Background(), "paths", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		parents, _, _ := unstructured.NestedSlice(r.Object, "status", "parents")
		if len(parents) != 1 {
			return false, fmt.Sprint(r.Object["status"])
		}
		p := &unstructured.Unstructured{Object: map[string]any{"status": parents[0]}}
		return condition(p, "Accepted") == "True" && condition(p, "ResolvedRefs") == "True", fmt.Sprint(parents)
	})
	c.expectAt(t, addr, "http", "gw.example", "/foo", 200, "foo-")
	c.expectAt(t, addr, "http", "gw.example", "/foo/more", 200, "foo-")
	c.expectAt(t, addr, "http", "gw.example", "/bar", 200, "bar-")
	c.expectAt(t, addr, "http", "gw.example", "/baz", 404, "404 no HTTPRoute rule matches")
	c.expectAt(t, addr, "http", "other.example", "/foo", 404, "404 no HTTPRoute rule matches")
}

// condition is the status of a condition of obj's status.
func condition(obj *unstructured.Unstructured, typ string) string {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

const gatewayAndRoute = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: web
spec:
  gatewayClassName: keelson
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: paths
spec:
  parentRefs: [{name: web}]
  hostnames: [gw.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /foo}}]
    backendRefs: [{name: foo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /bar}}]
    backendRefs: [{name: bar, port: 80}]
`
