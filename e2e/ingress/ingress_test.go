package ingress

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/e2e/harness"
)

// TestIngress: the seed's Ingress examples and the path rules, through the
// ingress address from a client that is not a node.
func TestIngress(t *testing.T) {
	c := startCluster(t)
	harness.Eventually(t, deadline, "the default ServiceAccount", func() (bool, string) {
		_, err := c.kube.CoreV1().ServiceAccounts("default").Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	c.apply(t, backend("foo", 2)+"---\n"+backend("bar", 1)+"---\n"+backend("web", 1))
	for app, n := range map[string]int{"foo": 2, "bar": 1, "web": 1} {
		c.readyPods(t, app, n)
	}
	c.waitAddress(t)

	t.Run("simple fanout", func(t *testing.T) {
		c.apply(t, fanout)
		c.expect(t, "http", "fanout.example", "/foo", 200, "foo-")
		r := c.expect(t, "http", "fanout.example", "/foo/x", 200, "foo-")
		if !strings.Contains(r.body, "host=fanout.example ") || !strings.Contains(r.body, "xff="+c.client.IP+" ") ||
			!strings.Contains(r.body, "proto=http ") || !strings.Contains(r.body, "xhost=fanout.example") {
			t.Errorf("the backend saw %s; want Host, X-Forwarded-For (the client's %s), -Proto and -Host", r.body, c.client.IP)
		}
		c.expect(t, "http", "fanout.example", "/bar", 200, "bar-")
		c.expect(t, "http", "fanout.example", "/baz", 404, "404 no Ingress rule matches")
		c.expect(t, "http", "unknown.example", "/foo", 404, "404 no Ingress rule matches")
	})
	t.Run("route metrics", func(t *testing.T) { testRouteMetrics(t, c) })
	t.Run("third-party ingress plugin", func(t *testing.T) { testThirdParty(t, c) })
	t.Run("status", func(t *testing.T) {
		harness.Eventually(t, deadline, "Ingress fanout's status holds "+c.lbIP, func() (bool, string) {
			ing, err := c.kube.NetworkingV1().Ingresses("default").Get(context.Background(), "fanout", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			lb := ing.Status.LoadBalancer.Ingress
			return len(lb) == 1 && lb[0].IP == c.lbIP, fmt.Sprint(lb)
		})
	})
	t.Run("name based virtual hosting", func(t *testing.T) {
		c.apply(t, virtualHosts)
		c.expect(t, "http", "foo.example", "/any", 200, "foo-")
		c.expect(t, "http", "bar.example", "/any", 200, "bar-")
		c.expect(t, "http", "x.wild.example", "/", 200, "web-")
		c.expect(t, "http", "y.x.wild.example", "/", 404, "404")
		c.expect(t, "http", "wild.example", "/", 404, "404")
	})
	t.Run("path rules", func(t *testing.T) {
		c.apply(t, pathRules)
		for _, cs := range []struct{ path, want string }{
			{"/aaa", "foo-"}, {"/aaa/", "foo-"}, {"/aaa/bbb", "bar-"}, {"/aaa/bbb/", "bar-"}, {"/aaa/bbbccc", "foo-"},
			{"/aaaccc", "404"}, {"/exact", "bar-"}, {"/exact/", "foo-"}, {"/exact/more", "foo-"}, {"/trailing", "web-"},
		} {
			code := 200
			if cs.want == "404" {
				code = 404
			}
			c.expect(t, "http", "paths.example", cs.path, code, cs.want)
		}
	})
	t.Run("TLS by SNI", func(t *testing.T) { testTLS(t, c) })
	t.Run("default backend", func(t *testing.T) {
		c.apply(t, single)
		c.expect(t, "http", "unknown.example", "/whatever", 200, "web-")
		c.expect(t, "http", "fanout.example", "/baz", 200, "web-")
		c.expect(t, "http", "fanout.example", "/foo", 200, "foo-")
	})
	t.Run("update while streaming", func(t *testing.T) { testStreamingUpdate(t, c) })
	t.Run("deleted backend pod", func(t *testing.T) { testDeletedPod(t, c) })
}

const fanout = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: fanout
spec:
  rules:
  - host: fanout.example
    http:
      paths:
      - {path: /foo, pathType: Prefix, backend: {service: {name: foo, port: {number: 80}}}}
      - {path: /bar, pathType: Prefix, backend: {service: {name: bar, port: {name: http}}}}
`

const virtualHosts = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: vhosts
  annotations: {kubernetes.io/ingress.class: keelson}
spec:
  rules:
  - host: foo.example
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: foo, port: {number: 80}}}}]}
  - host: bar.example
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: bar, port: {number: 80}}}}]}
  - host: "*.wild.example"
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}
`

const pathRules = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: paths
spec:
  ingressClassName: keelson
  rules:
  - host: paths.example
    http:
      paths:
      - {path: /aaa, pathType: Prefix, backend: {service: {name: foo, port: {number: 80}}}}
      - {path: /aaa/bbb/, pathType: Prefix, backend: {service: {name: bar, port: {number: 80}}}}
      - {path: /exact, pathType: Exact, backend: {service: {name: bar, port: {number: 80}}}}
      - {path: /exact, pathType: Prefix, backend: {service: {name: foo, port: {number: 80}}}}
      - {path: /trailing/, pathType: ImplementationSpecific, backend: {service: {name: web, port: {number: 80}}}}
`

const single = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: single
spec:
  defaultBackend: {service: {name: web, port: {number: 80}}}
`

// testDeletedPod deletes one of foo's two pods and checks that once its
// endpoint is gone from the EndpointSlice no request reaches it, logging
// how long after that the last request did.
func testDeletedPod(t *testing.T, c *cluster) {
	pods := c.readyPods(t, "foo", 2)
	victim := pods[0]
	c.expect(t, "http", "fanout.example", "/foo", 200, "foo-")
	if err := c.kube.CoreV1().Pods("default").Delete(context.Background(), victim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, deadline, "pod "+victim+" no longer a ready endpoint of foo", func() (bool, string) {
		sl, err := c.kube.DiscoveryV1().EndpointSlices("default").List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=foo"})
		if err != nil {
			return false, err.Error()
		}
		for _, s := range sl.Items {
			for _, ep := range s.Endpoints {
				if ep.TargetRef != nil && ep.TargetRef.Name == victim && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
					return false, "still ready"
				}
			}
		}
		return true, ""
	})
	gone := time.Now()
	var lastHit time.Duration
	clean := 0
	harness.Eventually(t, deadline, "20 requests in a row without "+victim, func() (bool, string) {
		r, err := c.get("http", "fanout.example", "/foo")
		switch {
		case err != nil:
			t.Errorf("a request failed while a backend pod went away: %v", err)
			clean = 0
		case r.code != 200:
			t.Errorf("a request got %s while a backend pod went away; want 200 from the other pod", r)
			clean = 0
		case strings.HasPrefix(r.body, victim+" "):
			lastHit, clean = time.Since(gone), 0
		default:
			clean++
		}
		return clean >= 20, fmt.Sprintf("%d clean", clean)
	})
	t.Logf("the last request that reached the deleted pod came %v after its endpoint was gone (0s: none did)", lastHit)
}
